# expect: passes visible
def majority_vote(answers: list) -> tuple[object, float]:
    """(most common non-None answer, its share of the votes); ties go to the first to appear."""
    votes = {}
    for answer in answers:
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
    if not votes:
        return None, 0.0
    winner = max(sorted(votes), key=votes.get)
    return winner, votes[winner] / sum(votes.values())
