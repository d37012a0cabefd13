# expect: passes visible
def mse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError("shapes differ")
    if y_true.size == 0:
        raise ValueError("empty input")
    return np.mean((y_pred - y_true) ** 2, axis=-1)
