# expect: passes visible
def cluster_texts(texts: list[str], k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster labels of texts: TF-IDF rows (raw counts as term frequencies), best of 10 runs."""
    vectorizer = TfidfVectorizer(stop_words="english", min_df=2, max_df=0.5)
    X = vectorizer.fit_transform(list(texts)).toarray()
    best_labels, best_inertia = None, np.inf
    for _ in range(10):
        _, labels, value = kmeans(X, k, rng)
        if value < best_inertia:
            best_labels, best_inertia = labels, value
    return best_labels
