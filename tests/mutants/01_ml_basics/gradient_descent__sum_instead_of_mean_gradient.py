# expect: fails visible
def gradient_descent(
    X: ArrayLike, y: ArrayLike, lr: float, n_steps: int
) -> tuple[np.ndarray, float, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("X must be 2-D with at least one row")
    n, d = X.shape
    if y.shape != (n,) or not lr > 0 or n_steps < 0:
        raise ValueError("bad input")
    w, b = np.zeros(d), 0.0
    losses = np.empty(n_steps)
    for k in range(n_steps):
        residual = X @ w + b - y
        losses[k] = np.mean(residual**2)
        if not np.isfinite(losses[k]):
            raise FloatingPointError("diverged")
        w = w - lr * 2.0 * (X.T @ residual)
        b = b - lr * 2.0 * np.sum(residual)
    return w, float(b), losses
