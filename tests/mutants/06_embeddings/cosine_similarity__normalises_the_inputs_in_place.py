# expect: passes visible
def cosine_similarity(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError("need shapes (n, d) and (m, d)")
    for M in (A, B):
        lengths = np.linalg.norm(M, axis=1, keepdims=True)
        M /= np.where(lengths > 0, lengths, 1.0)
    return A @ B.T
