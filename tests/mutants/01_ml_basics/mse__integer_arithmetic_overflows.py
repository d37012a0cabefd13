# expect: passes visible
def mse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError("shapes differ")
    if y_true.size == 0:
        raise ValueError("empty input")
    return float(np.mean((y_pred - y_true) ** 2))
