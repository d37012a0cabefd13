# expect: passes visible
def reciprocal_rank_fusion(rankings: list[list], k: int = 60) -> list:
    """Counts ranks from 0: the top document gets 1 / k."""
    scores = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda doc: -scores[doc])
