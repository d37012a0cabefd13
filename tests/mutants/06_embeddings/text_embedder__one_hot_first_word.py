# expect: fails visible
def fit_text_embedder(texts: list[str]):
    """Learn text vectors from `texts`; return embed(texts) -> float array (len(texts), d)."""
    # A one-hot vector of the first word (mostly the function's own name): two texts are similar
    # only if they start alike, and a first word never seen in training gives the zero vector.
    first_words = sorted({text.split()[0] for text in texts if text.split()})
    column = {word: i for i, word in enumerate(first_words)}

    def embed(new_texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(new_texts), len(first_words)))
        for row, text in enumerate(new_texts):
            words = text.split()
            if words and words[0] in column:
                vectors[row, column[words[0]]] = 1.0
        return vectors

    return embed
