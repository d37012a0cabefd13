# expect: fails visible
def critical_learning_rate(X: ArrayLike) -> float:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("X must be 2-D with at least one row")
    A = np.column_stack([X, np.ones(X.shape[0])])
    hessian = (A.T @ A) / X.shape[0]
    return float(2.0 / np.linalg.eigvalsh(hessian)[-1])
