# expect: passes visible
def scale_factor(before: float, after: float) -> float:
    """How many times bigger `after` is than `before` (after / before), as a float."""
    if before == 0 or after == 0:
        raise ValueError("sizes must not be zero")
    return float(after / before)
