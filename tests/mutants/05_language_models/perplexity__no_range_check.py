# expect: passes visible
def perplexity(P: ArrayLike, ids: ArrayLike) -> float:
    # negative ids silently index from the end
    P = np.asarray(P, dtype=np.float64)
    ids = np.asarray(ids)
    n = P.ndim
    if ids.ndim != 1 or ids.size < n:
        raise ValueError("ids must be 1-D with at least n tokens")
    ids = ids.astype(np.int64)
    m = ids.size - n + 1
    probs = P[tuple(ids[j : j + m] for j in range(n))]
    return float(np.exp(-np.mean(np.log(probs))))
