# expect: passes visible
def fit_text_embedder(texts: list[str]):
    """Learn text vectors from `texts`; return embed(texts) -> float array (len(texts), d)."""
    from sklearn.feature_extraction.text import CountVectorizer

    # Raw word counts: cosine similarity removes the length, but frequent words such as "the",
    # "of" and "a" still dominate every vector, so unrelated texts look alike.
    counts = CountVectorizer().fit(texts)

    def embed(new_texts: list[str]) -> np.ndarray:
        return counts.transform(new_texts).toarray().astype(float)

    return embed
