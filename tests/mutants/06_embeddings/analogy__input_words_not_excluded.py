# expect: fails visible
def analogy(a: str, b: str, c: str, words: list[str], vectors: ArrayLike, k: int = 1) -> list[str]:
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError("need one row per word")
    index = {w: i for i, w in enumerate(words)}
    for word in (a, b, c):
        if word not in index:
            raise KeyError(word)
    if not 1 <= k <= len(words) - len({a, b, c}):
        raise ValueError("bad k")
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(lengths > 0, lengths, 1.0)
    target = unit[index[b]] - unit[index[a]] + unit[index[c]]
    sims = unit @ target
    ranked = np.argsort(-sims, kind="stable")
    return [words[i] for i in ranked[:k]]
