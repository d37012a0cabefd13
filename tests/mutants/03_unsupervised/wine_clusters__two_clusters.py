# expect: passes visible
def fit_wine_clusters(X: np.ndarray):
    """Fit three clusters to wine measurements X (n, 13); return a model with predict(X)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Standardised, but two clusters for three cultivars.
    return make_pipeline(StandardScaler(), KMeans(2, n_init=10, random_state=0)).fit(X)
