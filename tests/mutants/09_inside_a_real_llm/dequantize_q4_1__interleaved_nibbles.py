# expect: fails visible
def dequantize_q4_1(raw):
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size % 20:
        raise ValueError("raw must be a 1-D uint8 array of whole 20-byte Q4_1 blocks")
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
    m = blocks[:, 2:4].copy().view("<f2").astype(np.float32)
    packed = blocks[:, 4:]
    q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(-1, 32).astype(np.float32)
    return (d * q + m).reshape(-1)
