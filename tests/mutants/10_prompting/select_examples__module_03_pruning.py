# expect: passes visible
def select_examples(query: str, examples: list[dict[str, str]], k: int) -> list[dict[str, str]]:
    """The k examples whose inputs are most TF-IDF-similar to the query, most similar first."""
    if not 1 <= k <= len(examples):
        raise ValueError(f"k must be between 1 and {len(examples)}, got {k}")
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2, max_df=0.5)
    vectors = vectorizer.fit_transform([example["input"] for example in examples])
    similarity = (vectors @ vectorizer.transform([query]).T).toarray().ravel()
    order = np.argsort(-similarity, kind="stable")[:k]
    return [examples[i] for i in order]
