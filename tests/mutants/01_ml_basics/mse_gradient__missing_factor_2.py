# expect: fails visible
def mse_gradient(X: ArrayLike, y: ArrayLike, w: ArrayLike, b: float) -> tuple[np.ndarray, float]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("X must be 2-D with at least one row")
    n, d = X.shape
    if y.shape != (n,) or w.shape != (d,):
        raise ValueError("shapes do not match")
    residual = X @ w + b - y
    return X.T @ residual / n, float(np.mean(residual))
