# expect: fails visible
def most_likely_next_token(probs: dict[str, float]) -> str:
    """The token with the highest probability; ties go to the alphabetically first token."""
    if not probs:
        raise ValueError("the probability table is empty")
    best = max(probs.values())
    return min(token for token, p in probs.items() if p == best)
