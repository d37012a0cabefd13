# expect: fails visible
def play_bandit(pull: Callable[[int], float], n_arms: int, n_steps: int) -> None:
    """Play a Gaussian bandit for n_steps pulls, trying to keep the regret small."""
    # Exercise 2's epsilon-greedy with epsilon = 0.1: a tenth of the pulls stay random forever.
    rng = np.random.default_rng(0)
    estimates, counts = np.zeros(n_arms), np.zeros(n_arms)
    for _ in range(n_steps):
        arm = int(rng.integers(n_arms)) if rng.random() < 0.1 else int(np.argmax(estimates))
        reward = pull(arm)
        counts[arm] += 1
        estimates[arm] += (reward - estimates[arm]) / counts[arm]
