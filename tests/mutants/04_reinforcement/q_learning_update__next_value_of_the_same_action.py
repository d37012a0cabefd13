# expect: passes visible
def q_learning_update(
    Q: np.ndarray,
    state: int,
    action: int,
    reward: float,
    next_state: int,
    terminated: bool,
    alpha: float,
    gamma: float,
) -> float:
    target = float(reward) if terminated else float(reward) + gamma * float(Q[next_state, action])
    td_error = target - float(Q[state, action])
    Q[state, action] += alpha * td_error
    return td_error
