# expect: fails visible
def init_centroids(X: ArrayLike, k: int, rng: np.random.Generator) -> np.ndarray:
    """k different rows of X: the first k of a random permutation."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be 2-D with at least one row, got shape {X.shape}")
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    return X[rng.permutation(n)[:k]]
