# expect: fails visible
def fit_char_model(text: str, chars: tuple[str, ...]):
    """Fit a next-character model on text; return predict(context) -> probabilities over chars."""
    # A unigram model with add-one smoothing: how common each character is, whatever came before.
    stoi = {c: i for i, c in enumerate(chars)}
    counts = np.bincount([stoi[c] for c in text], minlength=len(chars)) + 1.0
    probs = counts / counts.sum()
    return lambda context: probs
