# expect: fails visible
def layer_norm(x, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    C = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    out = centred / np.sqrt(x.var(axis=-1, ddof=1, keepdims=True) + eps)
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and np.shape(param) != (C,):
            raise ValueError(f"{name} must have shape ({C},)")
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out
