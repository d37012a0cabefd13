# expect: passes visible
def init_centroids(X: ArrayLike, k: int, rng: np.random.Generator) -> np.ndarray:
    """k different rows of X, drawn with rng.choice(n, size=k, replace=False), as a new array."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be 2-D with at least one row, got shape {X.shape}")
    indices = rng.choice(X.shape[0], size=k, replace=False)
    return X[indices]
