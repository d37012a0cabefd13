# expect: passes visible
def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorts ascending and reverses: equal scores come out with the higher index first."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    dots = matrix @ query
    scores = np.zeros(len(matrix))
    nonzero = norms > 0
    scores[nonzero] = dots[nonzero] / norms[nonzero]
    order = np.argsort(scores, kind="stable")[::-1][:k]
    return order, scores[order]
