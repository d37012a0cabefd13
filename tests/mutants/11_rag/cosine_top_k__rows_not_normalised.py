# expect: fails visible
def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalises the query only: a dot product, so long rows win."""
    norm = np.linalg.norm(query)
    scores = matrix @ query / norm if norm > 0 else np.zeros(len(matrix))
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]
