# expect: passes visible
def perplexity(P: ArrayLike, ids: ArrayLike) -> float:
    # the product of many probabilities underflows to 0
    P = np.asarray(P, dtype=np.float64)
    ids = np.asarray(ids)
    n = P.ndim
    if ids.ndim != 1 or ids.size < n:
        raise ValueError("ids must be 1-D with at least n tokens")
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= P.shape[-1]:
        raise ValueError("every id must be in [0, V)")
    m = ids.size - n + 1
    probs = P[tuple(ids[j : j + m] for j in range(n))]
    product = float(np.prod(probs))
    return float("inf") if product == 0.0 else product ** (-1.0 / m)
