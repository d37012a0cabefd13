# expect: fails visible
def sinusoidal_positional_encoding(n_positions, d_model):
    if n_positions < 1 or d_model < 1:
        raise ValueError("need n_positions >= 1 and d_model >= 1")
    position = np.arange(n_positions, dtype=np.float64)[:, None]
    frequencies = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    angles = position * frequencies
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)[:, :d_model]
