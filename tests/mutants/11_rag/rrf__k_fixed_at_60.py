# expect: passes visible
def reciprocal_rank_fusion(rankings: list[list], k: int = 60) -> list:
    """Uses the usual constant 60 whatever k is passed."""
    scores = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (60 + rank)
    return sorted(scores, key=lambda doc: -scores[doc])
