# expect: passes visible
def assign_clusters(X: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Index of the nearest centroid, from |x|^2 - 2 x.c + |c|^2 (without centring first)."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if X.ndim != 2 or centroids.ndim != 2:
        raise ValueError("X and centroids must both be 2-D")
    if centroids.shape[0] == 0:
        raise ValueError("there must be at least one centroid")
    if X.shape[1] != centroids.shape[1]:
        raise ValueError(f"X has {X.shape[1]} columns but the centroids have {centroids.shape[1]}")
    distances = (
        np.sum(X**2, axis=1)[:, None] - 2.0 * X @ centroids.T + np.sum(centroids**2, axis=1)
    )
    return np.argmin(distances, axis=1)
