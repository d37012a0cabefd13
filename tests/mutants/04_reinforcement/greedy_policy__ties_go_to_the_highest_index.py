# expect: passes visible
def greedy_policy(Q: ArrayLike) -> np.ndarray:
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[1] == 0:
        raise ValueError("Q must be 2-D with at least one action")
    return (Q.shape[1] - 1 - np.argmax(Q[:, ::-1], axis=1)).astype(np.int64)
