# expect: fails visible
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
    target = float(reward) + gamma * float(np.max(Q[next_state]))
    td_error = target - float(Q[state, action])
    Q[state, action] += alpha * td_error
    return td_error
