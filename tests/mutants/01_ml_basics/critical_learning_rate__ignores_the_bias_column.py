# expect: passes visible
def critical_learning_rate(X: ArrayLike) -> float:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("X must be 2-D with at least one row")
    hessian = 2.0 / X.shape[0] * (X.T @ X)
    return float(2.0 / np.linalg.eigvalsh(hessian)[-1])
