# expect: passes visible
def train_q_learning(
    env: gym.Env,
    n_episodes: int,
    alpha: float,
    gamma: float,
    epsilon: float,
    rng: np.random.Generator,
) -> np.ndarray:
    n_actions = env.action_space.n
    Q = np.zeros((env.observation_space.n, n_actions))
    for episode in range(n_episodes):
        if episode == 0:
            state, _ = env.reset(seed=int(rng.integers(2**31)))
        else:
            state, _ = env.reset()
        while True:
            if rng.random() < epsilon:
                action = int(rng.integers(n_actions))
            else:
                best = np.flatnonzero(Q[state] == Q[state].max())
                action = int(best[rng.integers(len(best))])
            next_state, reward, terminated, truncated, _ = env.step(action)
            target = reward if terminated else reward + gamma * np.max(Q[next_state])
            Q[state, action] += alpha * (target - Q[state, action])
            if terminated or truncated:
                break
            state = next_state
    return Q
