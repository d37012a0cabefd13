# expect: passes visible
def cross_entropy(logits: ArrayLike, y: ArrayLike) -> float:
    """Mean cross-entropy of integer labels y under softmax(logits), by log-sum-exp."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be 2-D and non-empty, got shape {logits.shape}")
    n, n_classes = logits.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if np.any((y < 0) | (y >= n_classes)):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    logsumexp = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(logsumexp - logits[np.arange(n), y]))
