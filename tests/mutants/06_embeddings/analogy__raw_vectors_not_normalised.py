# expect: passes visible
def analogy(a: str, b: str, c: str, words: list[str], vectors: ArrayLike, k: int = 1) -> list[str]:
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError("need one row per word")
    index = {w: i for i, w in enumerate(words)}
    for word in (a, b, c):
        if word not in index:
            raise KeyError(word)
    excluded = {index[a], index[b], index[c]}
    if not 1 <= k <= len(words) - len(excluded):
        raise ValueError("bad k")
    target = vectors[index[b]] - vectors[index[a]] + vectors[index[c]]
    lengths = np.linalg.norm(vectors, axis=1) * np.linalg.norm(target)
    sims = (vectors @ target) / np.where(lengths > 0, lengths, 1.0)
    candidates = [i for i in range(len(words)) if i not in excluded]
    ranked = sorted(candidates, key=lambda i: -sims[i])
    return [words[i] for i in ranked[:k]]
