# expect: passes visible
def play_bandit(pull: Callable[[int], float], n_arms: int, n_steps: int) -> None:
    """Play a Gaussian bandit for n_steps pulls, trying to keep the regret small."""
    # Optimistic start, then greedy: explores every arm early, but settles too soon on some bandits.
    estimates, counts = np.full(n_arms, 5.0), np.zeros(n_arms)
    for _ in range(n_steps):
        arm = int(np.argmax(estimates))
        reward = pull(arm)
        counts[arm] += 1
        estimates[arm] += (reward - estimates[arm]) / counts[arm]
