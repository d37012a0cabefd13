# expect: fails visible
def fit_text_embedder(texts: list[str]):
    """Learn text vectors from `texts`; return embed(texts) -> float array (len(texts), d)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Good TF-IDF vectors squeezed onto 4 random directions: far too few to keep the packages
    # apart, and random directions ignore which words matter.
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit(texts)
    projection = np.random.default_rng(0).normal(size=(len(tfidf.vocabulary_), 4))

    def embed(new_texts: list[str]) -> np.ndarray:
        return tfidf.transform(new_texts).toarray() @ projection

    return embed
