# expect: passes visible
def fit_digit_classifier(X: np.ndarray, y: np.ndarray):
    """Train a classifier of 8x8 digit images (raw pixels 0..16); return it fitted."""
    from sklearn.neighbors import KNeighborsClassifier

    # A vote of 25 neighbours blurs the classes: about 97% on the validation split, 96% held back.
    return KNeighborsClassifier(n_neighbors=25).fit(X, y)
