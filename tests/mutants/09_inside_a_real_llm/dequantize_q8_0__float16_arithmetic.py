# expect: fails visible
def dequantize_q8_0(raw):
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size % 34:
        raise ValueError("raw must be a 1-D uint8 array of whole 34-byte Q8_0 blocks")
    blocks = raw.reshape(-1, 34)
    d = blocks[:, :2].copy().view("<f2")
    q = blocks[:, 2:].view(np.int8).astype(np.float16)
    return (d * q).astype(np.float32).reshape(-1)
