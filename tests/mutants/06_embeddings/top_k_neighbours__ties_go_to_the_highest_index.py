# expect: passes visible
def top_k_neighbours(
    query: ArrayLike, vectors: ArrayLike, k: int, exclude=()
) -> tuple[np.ndarray, np.ndarray]:
    query = np.asarray(query, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    if query.ndim != 1 or vectors.ndim != 2 or vectors.shape[1] != query.shape[0]:
        raise ValueError("need shapes (d,) and (n, d)")
    excluded = list(exclude)
    if not 0 <= k <= vectors.shape[0] - len(excluded):
        raise ValueError("bad k")
    lengths = np.linalg.norm(vectors, axis=1)
    q_length = np.linalg.norm(query)
    unit_rows = vectors / np.where(lengths > 0, lengths, 1.0)[:, None]
    sims = unit_rows @ (query / q_length if q_length > 0 else query)
    order = [i for i in np.argsort(sims)[::-1] if i not in excluded][:k]
    return np.array(order, dtype=np.int64), sims[order]
