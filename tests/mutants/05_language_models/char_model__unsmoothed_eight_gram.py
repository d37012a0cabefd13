# expect: fails visible
def fit_char_model(text: str, chars: tuple[str, ...]):
    """Fit a next-character model on text; return predict(context) -> probabilities over chars."""
    # An 8-gram model without smoothing: a character never seen after a known context gets
    # probability 0 (only contexts never seen get the uniform distribution).
    n = 8
    V = len(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    counts = {}
    for i in range(len(text) - n + 1):
        row = counts.setdefault(text[i : i + n - 1], np.zeros(V))
        row[stoi[text[i + n - 1]]] += 1
    uniform = np.full(V, 1.0 / V)

    def predict(context):
        row = counts.get(context[-(n - 1) :]) if len(context) >= n - 1 else None
        return uniform if row is None else row / row.sum()

    return predict
