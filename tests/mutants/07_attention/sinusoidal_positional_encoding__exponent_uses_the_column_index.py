# expect: fails visible
def sinusoidal_positional_encoding(n_positions, d_model):
    if n_positions < 1 or d_model < 1:
        raise ValueError("need n_positions >= 1 and d_model >= 1")
    positions = np.arange(n_positions, dtype=np.float64)[:, None]
    columns = np.arange(d_model)
    angles = positions * 10000.0 ** (-2 * columns / d_model)
    return np.where(columns % 2 == 0, np.sin(angles), np.cos(angles))
