# expect: fails visible
def fit_diabetes_model(X: np.ndarray, y: np.ndarray):
    """Fit a regression model of disease progression; return it (it has predict(X))."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    # A straight line in the body mass index alone (column 2) ignores the blood values.
    only_bmi = ColumnTransformer([("bmi", "passthrough", [2])])
    return make_pipeline(only_bmi, LinearRegression()).fit(X, y)
