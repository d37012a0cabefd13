# expect: fails visible
def fit_char_model(text: str, chars: tuple[str, ...]):
    """Fit a next-character model on text; return predict(context) -> probabilities over chars."""
    # A bigram model with add-one smoothing: only the last character of the context counts.
    V = len(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text])
    counts = np.zeros((V, V))
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    probs = (counts + 1) / (counts.sum(axis=1, keepdims=True) + V)
    uniform = np.full(V, 1.0 / V)
    return lambda context: probs[stoi[context[-1]]] if context else uniform
