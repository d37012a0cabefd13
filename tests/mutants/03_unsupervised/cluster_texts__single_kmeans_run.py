# expect: fails visible
def cluster_texts(texts: list[str], k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster labels of texts: TF-IDF rows and one k-means run."""
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2, max_df=0.5)
    X = vectorizer.fit_transform(list(texts)).toarray()
    _, labels, _ = kmeans(X, k, rng)
    return labels
