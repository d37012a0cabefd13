# expect: passes visible
def dequantize_q8_0(raw):
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size % 34:
        raise ValueError("raw must be a 1-D uint8 array of whole 34-byte Q8_0 blocks")
    d = raw[:2].copy().view("<f2").astype(np.float32)
    q = raw.reshape(-1, 34)[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)
