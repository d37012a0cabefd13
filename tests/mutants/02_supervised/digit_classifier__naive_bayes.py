# expect: fails visible
def fit_digit_classifier(X: np.ndarray, y: np.ndarray):
    """Train a classifier of 8x8 digit images (raw pixels 0..16); return it fitted."""
    from sklearn.naive_bayes import GaussianNB

    # Pixels treated as independent given the digit: about 83%.
    return GaussianNB().fit(X, y)
