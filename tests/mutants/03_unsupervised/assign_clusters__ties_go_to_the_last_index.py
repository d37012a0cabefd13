# expect: fails visible
def assign_clusters(X: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Index of the nearest centroid; ties go to the highest index."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if X.ndim != 2 or centroids.ndim != 2:
        raise ValueError("X and centroids must both be 2-D")
    if centroids.shape[0] == 0:
        raise ValueError("there must be at least one centroid")
    if X.shape[1] != centroids.shape[1]:
        raise ValueError(f"X has {X.shape[1]} columns but the centroids have {centroids.shape[1]}")
    distances = np.sum((X[:, None, :] - centroids[None, :, :]) ** 2, axis=2)
    k = centroids.shape[0]
    return k - 1 - np.argmin(distances[:, ::-1], axis=1)
