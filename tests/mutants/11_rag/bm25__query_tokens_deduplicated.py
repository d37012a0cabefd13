# expect: passes visible
def bm25_scores(query_tokens: list[str], docs_tokens: list[list[str]], k1: float = 1.5,
                b: float = 0.75) -> np.ndarray:
    """The BM25 score (Lucene's variant) of every document for the query."""
    n = len(docs_tokens)
    counts = [Counter(doc) for doc in docs_tokens]
    lengths = np.array([len(doc) for doc in docs_tokens], dtype=float)
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    scores = np.zeros(n)
    for token in dict.fromkeys(query_tokens):
        tf = np.array([c[token] for c in counts], dtype=float)
        df = np.count_nonzero(tf)
        if df:
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores += idf * tf / (tf + norm)
    return scores
