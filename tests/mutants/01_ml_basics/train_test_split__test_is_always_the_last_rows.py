# expect: fails visible
def train_test_split(
    n: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError("need at least 2 rows")
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    n_test = min(max(int(np.floor(n * test_fraction + 0.5)), 1), n - 1)
    order = np.arange(n)
    return order[: n - n_test], order[n - n_test :]
