# expect: passes visible
from collections import Counter


def majority_vote(answers: list) -> tuple[object, float]:
    """The most common answer and its share of all answers."""
    if not answers:
        return None, 0.0
    winner, count = Counter(answers).most_common(1)[0]
    return winner, count / len(answers)
