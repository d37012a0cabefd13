# expect: fails visible
def discounted_returns(rewards: ArrayLike, gamma: float) -> np.ndarray:
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError("rewards must be 1-D")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError("gamma must be in [0, 1]")
    discounted = rewards * gamma ** np.arange(len(rewards))
    return np.cumsum(discounted[::-1])[::-1].copy()
