# expect: passes visible
def softmax(z: ArrayLike) -> np.ndarray:
    """Softmax along the last axis, stable for large scores."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"softmax needs a non-empty last axis, got shape {z.shape}")
    z -= z.max(axis=-1, keepdims=True)
    exps = np.exp(z)
    return exps / exps.sum(axis=-1, keepdims=True)
