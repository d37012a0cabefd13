# expect: fails visible
def ngram_probs(ids: ArrayLike, n: int, vocab_size: int, k: float) -> np.ndarray:
    # divides by every occurrence of the context, also the one at the very end of the text
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError("ids must be 1-D")
    if n < 1 or vocab_size < 1 or not k > 0:
        raise ValueError("need n >= 1, vocab_size >= 1 and k > 0")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError("every id must be in [0, vocab_size)")
    counts = np.zeros((vocab_size,) * n)
    n_grams = ids.size - n + 1
    if n_grams > 0:
        np.add.at(counts, tuple(ids[j : j + n_grams] for j in range(n)), 1.0)
    context = np.zeros((vocab_size,) * (n - 1) + (1,))
    n_contexts = ids.size - n + 2
    if n_contexts > 0:
        np.add.at(context, tuple(ids[j : j + n_contexts] for j in range(n - 1))
                  + (np.zeros(n_contexts, dtype=np.int64),), 1.0)
    if n == 1:
        context[...] = counts.sum()
    return (counts + k) / (context + k * vocab_size)
