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
    best_next = max(0.0, *Q[next_state])
    target = float(reward) if terminated else float(reward) + gamma * float(best_next)
    td_error = target - float(Q[state, action])
    Q[state, action] += alpha * td_error
    return td_error
