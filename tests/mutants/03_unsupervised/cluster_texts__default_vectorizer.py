# expect: fails visible
def cluster_texts(texts: list[str], k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster labels of texts: TfidfVectorizer with its defaults, best of 10 k-means runs."""
    X = TfidfVectorizer().fit_transform(list(texts)).toarray()
    best_labels, best_inertia = None, np.inf
    for _ in range(10):
        _, labels, value = kmeans(X, k, rng)
        if value < best_inertia:
            best_labels, best_inertia = labels, value
    return best_labels
