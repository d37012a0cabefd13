# expect: fails visible
def precision(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> float:
    """Macro-averaged precision over classes 0..n_classes-1; 0.0 for a class never predicted."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays of equal length, got {y_true.shape}, "
                         f"{y_pred.shape}")
    if np.any((y_true < 0) | (y_true >= n_classes) | (y_pred < 0) | (y_pred >= n_classes)):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    true_positives = np.bincount(y_true[y_true == y_pred], minlength=n_classes)
    predicted = np.bincount(y_pred, minlength=n_classes)
    return float(true_positives.sum() / predicted.sum())


def recall(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> float:
    """Macro-averaged recall over classes 0..n_classes-1; 0.0 for a class that never occurs."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays of equal length, got {y_true.shape}, "
                         f"{y_pred.shape}")
    if np.any((y_true < 0) | (y_true >= n_classes) | (y_pred < 0) | (y_pred >= n_classes)):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    true_positives = np.bincount(y_true[y_true == y_pred], minlength=n_classes)
    actual = np.bincount(y_true, minlength=n_classes)
    return float(true_positives.sum() / actual.sum())
