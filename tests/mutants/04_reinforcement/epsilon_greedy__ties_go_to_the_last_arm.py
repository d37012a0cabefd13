# expect: passes visible
def epsilon_greedy(estimates: ArrayLike, epsilon: float, rng: np.random.Generator) -> int:
    estimates = np.asarray(estimates, dtype=np.float64)
    if estimates.ndim != 1 or estimates.size == 0:
        raise ValueError("estimates must be a non-empty 1-D array")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError("epsilon must be in [0, 1]")
    if rng.random() < epsilon:
        return int(rng.integers(estimates.size))
    return int(estimates.size - 1 - np.argmax(estimates[::-1]))
