# expect: passes visible
def fit_char_model(text: str, chars: tuple[str, ...]):
    """Fit a next-character model on text; return predict(context) -> probabilities over chars."""
    # The lecture's best single order: a 5-gram model with add-k smoothing, k = 0.01. Contexts it
    # never saw get the uniform distribution instead of help from shorter contexts.
    n, k = 5, 0.01
    V = len(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    counts = {}
    for i in range(len(text) - n + 1):
        row = counts.setdefault(text[i : i + n - 1], np.zeros(V))
        row[stoi[text[i + n - 1]]] += 1
    uniform = np.full(V, 1.0 / V)

    def predict(context):
        row = counts.get(context[-(n - 1) :]) if len(context) >= n - 1 else None
        return uniform if row is None else (row + k) / (row.sum() + k * V)

    return predict
