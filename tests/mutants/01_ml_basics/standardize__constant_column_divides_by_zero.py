# expect: passes visible
def standardize(X_train: ArrayLike, X_test: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X_train = np.asarray(X_train, dtype=np.float64)
    X_test = np.asarray(X_test, dtype=np.float64)
    if X_train.ndim not in (1, 2) or X_test.ndim != X_train.ndim:
        raise ValueError("X_train and X_test must both be 1-D or both be 2-D")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError("column counts differ")
    if X_train.shape[0] == 0:
        raise ValueError("X_train must have at least one row")
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    return (X_train - mean) / std, (X_test - mean) / std
