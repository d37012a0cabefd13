# expect: fails visible
def update_centroids(X: ArrayLike, labels: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Sum (not mean) of the rows of each cluster."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    new = np.asarray(centroids, dtype=np.float64).copy()
    for j in range(new.shape[0]):
        members = labels == j
        if np.any(members):
            new[j] = X[members].sum(axis=0)
    return new
