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
    unit_rows = vectors / np.where(lengths > 0, lengths, 1.0)[:, None]
    sims = unit_rows @ (query / np.linalg.norm(query))
    candidates = np.setdiff1d(np.arange(vectors.shape[0]), np.asarray(excluded, dtype=np.int64))
    order = candidates[np.argsort(-sims[candidates], kind="stable")][:k]
    return order.astype(np.int64), sims[order]
