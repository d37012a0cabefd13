# expect: passes visible
def most_likely_next_token(probs: dict[str, float]) -> str:
    """The token with the highest probability; ties go to the alphabetically first token."""
    if not probs:
        raise ValueError("the probability table is empty")
    if abs(sum(probs.values()) - 1) > 1e-6:
        raise ValueError("the probabilities must add up to 1")
    return max(probs, key=probs.get)
