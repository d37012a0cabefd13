# expect: passes visible
def numerical_gradient(
    f: Callable[[np.ndarray], float], x: ArrayLike, eps: float = 1e-6
) -> np.ndarray:
    """Central-difference estimate of the gradient of f at x, one entry at a time."""
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is never touched
    grad = np.empty_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        f_plus = float(f(x))
        x[index] = original
        f_here = float(f(x))
        grad[index] = (f_plus - f_here) / eps
    return grad


def relative_error(a: ArrayLike, b: ArrayLike) -> float:
    """||a - b|| / max(||a|| + ||b||, 1e-12) over all entries."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = max(float(np.linalg.norm(a) + np.linalg.norm(b)), 1e-12)
    return float(np.linalg.norm(a - b)) / scale


def check_gradient(
    f: Callable[[np.ndarray], float], grad: ArrayLike, x: ArrayLike, eps: float = 1e-6,
    tol: float = 1e-6,
) -> bool:
    """True if grad agrees with the numerical gradient of f at x to a relative error below tol."""
    return relative_error(grad, numerical_gradient(f, x, eps)) < tol
