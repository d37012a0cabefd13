# expect: passes visible
def init_centroids(X: ArrayLike, k: int, rng: np.random.Generator) -> np.ndarray:
    """k different rows of X, drawn with rng.choice(n, size=k, replace=False), as a new array."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be 2-D with at least one row, got shape {X.shape}")
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    indices = rng.choice(n, size=k, replace=False)
    return X[indices]
