# expect: fails visible
def fit_char_model(text: str, chars: tuple[str, ...]):
    """Fit a next-character model on text; return predict(context) -> probabilities over chars."""
    # "Stupid backoff" up to 6-grams: the relative frequency after the longest context that saw the
    # character, times 0.4 per step back. Good scores for ranking, but they do not sum to 1.
    order, alpha = 6, 0.4
    V = len(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    counts = {}
    for n in range(1, order + 1):
        for i in range(len(text) - n + 1):
            row = counts.setdefault(text[i : i + n - 1], np.zeros(V))
            row[stoi[text[i + n - 1]]] += 1
    unigram = (counts[""] + 1) / (counts[""].sum() + V)

    def predict(context):
        scores = unigram
        for m in range(1, min(order - 1, len(context)) + 1):
            row = counts.get(context[-m:])
            if row is None:
                break
            scores = np.where(row > 0, row / row.sum(), alpha * scores)
        return scores

    return predict
