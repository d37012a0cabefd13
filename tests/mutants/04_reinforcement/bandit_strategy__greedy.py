# expect: fails visible
def play_bandit(pull: Callable[[int], float], n_arms: int, n_steps: int) -> None:
    """Play a Gaussian bandit for n_steps pulls, trying to keep the regret small."""
    # Pure greedy from zero estimates: sticks to the first arm that pays more than 0.
    estimates, counts = np.zeros(n_arms), np.zeros(n_arms)
    for _ in range(n_steps):
        arm = int(np.argmax(estimates))
        reward = pull(arm)
        counts[arm] += 1
        estimates[arm] += (reward - estimates[arm]) / counts[arm]
