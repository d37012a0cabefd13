# expect: passes visible
def pca(X: ArrayLike, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA via the SVD of the centred data: (scores, components, explained-variance ratio)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be 2-D with at least two rows, got shape {X.shape}")
    n, d = X.shape
    if not 1 <= n_components <= min(n, d):
        raise ValueError(f"n_components must be between 1 and {min(n, d)}, got {n_components}")
    if np.all(np.ptp(X, axis=0) == 0):
        raise ValueError("all rows of X are equal: there is no variance to explain")
    centred = X - X.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:n_components]
    signs = np.where(components[:, 0] < 0, -1.0, 1.0)
    components = components * signs[:, None]
    ratio = s[:n_components] ** 2 / np.sum(s**2)
    return centred @ components.T, components, ratio
