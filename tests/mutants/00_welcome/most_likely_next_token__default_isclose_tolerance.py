# expect: passes visible
import math


def most_likely_next_token(probs: dict[str, float]) -> str:
    """The token with the highest probability; ties go to the alphabetically first token."""
    if not probs:
        raise ValueError("the probability table is empty")
    if not math.isclose(sum(probs.values()), 1):
        raise ValueError("the probabilities must add up to 1")
    best = max(probs.values())
    return min(token for token, p in probs.items() if p == best)
