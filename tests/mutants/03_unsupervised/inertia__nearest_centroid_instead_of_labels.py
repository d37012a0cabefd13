# expect: passes visible
def inertia(X: ArrayLike, centroids: ArrayLike, labels: ArrayLike) -> float:
    """Sum of squared distances to the nearest centroid (the labels are only checked)."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2 or centroids.ndim != 2:
        raise ValueError("X and centroids must both be 2-D")
    if X.shape[1] != centroids.shape[1]:
        raise ValueError(f"X has {X.shape[1]} columns but the centroids have {centroids.shape[1]}")
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels must have shape ({X.shape[0]},), got {labels.shape}")
    k = centroids.shape[0]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be between 0 and {k - 1}")
    distances = np.sum((X[:, None, :] - centroids[None, :, :]) ** 2, axis=2)
    return float(np.sum(distances.min(axis=1)))
