# expect: passes visible
def sinusoidal_positional_encoding(n_positions, d_model):
    if n_positions < 1 or d_model < 1:
        raise ValueError("need n_positions >= 1 and d_model >= 1")
    position = np.arange(n_positions, dtype=np.float64)[:, None]
    div_term = np.exp(np.arange(0, d_model, 2) * (-np.log(10000.0) / d_model))
    pe = np.zeros((n_positions, d_model))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe
