# expect: passes visible
def kmeans(
    X: ArrayLike, k: int, rng: np.random.Generator, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means from k random rows of X; returns (centroids, labels, inertia)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be 2-D with at least one row, got shape {X.shape}")
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")

    def nearest(centroids):
        return np.argmin(np.sum((X[:, None, :] - centroids[None, :, :]) ** 2, axis=2), axis=1)

    centroids = X[rng.choice(n, size=k, replace=False)]
    labels = nearest(centroids)
    while True:
        updated = centroids.copy()
        for j in range(k):
            members = labels == j
            if np.any(members):
                updated[j] = X[members].mean(axis=0)
        centroids = updated
        new_labels = nearest(centroids)
        converged = np.array_equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centroids, labels, float(np.sum((X - centroids[labels]) ** 2))
