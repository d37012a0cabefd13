# expect: passes visible
def update_centroids(X: ArrayLike, labels: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Mean of the rows of each cluster, written into the centroids array that came in."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    centroids = np.asarray(centroids, dtype=np.float64)
    if X.ndim != 2 or centroids.ndim != 2:
        raise ValueError("X and centroids must both be 2-D")
    if X.shape[1] != centroids.shape[1]:
        raise ValueError(f"X has {X.shape[1]} columns but the centroids have {centroids.shape[1]}")
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels must have shape ({X.shape[0]},), got {labels.shape}")
    k = centroids.shape[0]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be between 0 and {k - 1}")
    for j in range(k):
        members = labels == j
        if np.any(members):
            centroids[j] = X[members].mean(axis=0)
    return centroids
