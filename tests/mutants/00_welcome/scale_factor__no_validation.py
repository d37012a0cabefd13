# expect: fails visible
def scale_factor(before: float, after: float) -> float:
    """How many times bigger `after` is than `before` (after / before), as a float."""
    return after / before
