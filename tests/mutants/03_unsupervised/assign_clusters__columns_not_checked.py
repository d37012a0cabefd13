# expect: passes visible
def assign_clusters(X: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Index of the nearest centroid, letting numpy broadcast whatever shapes come in."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if X.ndim != 2 or centroids.ndim != 2:
        raise ValueError("X and centroids must both be 2-D")
    if centroids.shape[0] == 0:
        raise ValueError("there must be at least one centroid")
    distances = np.sum((X[:, None, :] - centroids[None, :, :]) ** 2, axis=2)
    return np.argmin(distances, axis=1)
