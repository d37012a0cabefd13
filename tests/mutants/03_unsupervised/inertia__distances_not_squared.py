# expect: fails visible
def inertia(X: ArrayLike, centroids: ArrayLike, labels: ArrayLike) -> float:
    """Sum over the rows of the (unsquared) distance to their centroid."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    labels = np.asarray(labels)
    return float(np.sum(np.sqrt(np.sum((X - centroids[labels]) ** 2, axis=1))))
