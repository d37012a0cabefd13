# expect: passes visible
def run_bandit(
    arm_means: ArrayLike, n_steps: int, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arm_means = np.asarray(arm_means, dtype=np.float64)
    if arm_means.ndim != 1 or arm_means.size == 0:
        raise ValueError("arm_means must be a non-empty 1-D array")
    if n_steps < 0 or not 0.0 <= epsilon <= 1.0:
        raise ValueError("bad n_steps or epsilon")
    k = arm_means.size
    estimates = np.zeros(k)
    counts = np.zeros(k)
    actions = np.empty(n_steps, dtype=np.int64)
    rewards = np.empty(n_steps)
    for t in range(n_steps):
        if rng.random() < epsilon:
            a = int(rng.integers(k))
        else:
            best = np.flatnonzero(estimates == estimates.max())
            a = int(best[rng.integers(len(best))])
        r = rng.normal(arm_means[a], 1.0)
        counts[a] += 1
        estimates[a] += (r - estimates[a]) / counts[a]
        actions[t], rewards[t] = a, r
    return actions, rewards, estimates
