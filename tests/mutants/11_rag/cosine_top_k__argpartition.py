# expect: fails visible
def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """np.argpartition for the k best, then sorted: fails for k >= n and breaks ties anyhow."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    dots = matrix @ query
    scores = np.zeros(len(matrix))
    nonzero = norms > 0
    scores[nonzero] = dots[nonzero] / norms[nonzero]
    best = np.argpartition(-scores, k)[:k]
    order = best[np.argsort(-scores[best])]
    return order, scores[order]
