# expect: passes visible
def ngram_probs(ids: ArrayLike, n: int, vocab_size: int, k: float) -> np.ndarray:
    # treats every model as a bigram model: wrong shape for n = 1 and n >= 3
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError("ids must be 1-D")
    if n < 1 or vocab_size < 1 or not k > 0:
        raise ValueError("need n >= 1, vocab_size >= 1 and k > 0")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError("every id must be in [0, vocab_size)")
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids[:-1], ids[1:]):
        counts[a, b] += 1
    return (counts + k) / (counts.sum(axis=1, keepdims=True) + k * vocab_size)
