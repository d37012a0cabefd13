# expect: passes visible
def causal_mask(n_queries, n_keys=None):
    n_keys = n_queries if n_keys is None else n_keys
    if n_queries < 1:
        raise ValueError("n_queries must be at least 1")
    if n_keys < n_queries:
        raise ValueError("n_keys must be at least n_queries")
    return np.tril(np.ones((n_queries, n_keys), dtype=bool))
