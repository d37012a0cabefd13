# expect: passes visible
def mse_gradient(X: ArrayLike, y: ArrayLike, w: ArrayLike, b: float) -> tuple[np.ndarray, float]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n = X.shape[0]
    residual = X @ w + b - y
    return 2.0 / n * (X.T @ residual), 2.0 * float(np.mean(residual))
