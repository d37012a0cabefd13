# expect: passes visible
def fit_wine_clusters(X: np.ndarray):
    """Fit three clusters to wine measurements X (n, 13); return a model with predict(X)."""
    # k-means on the raw columns: proline, in the hundreds, decides almost alone.
    return KMeans(3, n_init=10, random_state=0).fit(X)
