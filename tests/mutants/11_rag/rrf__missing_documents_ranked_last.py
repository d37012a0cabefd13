# expect: passes visible
def reciprocal_rank_fusion(rankings: list[list], k: int = 60) -> list:
    """A ranking that lacks a document counts it just below its last place."""
    docs = list(dict.fromkeys(doc for ranking in rankings for doc in ranking))
    scores = dict.fromkeys(docs, 0.0)
    for ranking in rankings:
        ranks = {doc: rank for rank, doc in enumerate(ranking, start=1)}
        for doc in docs:
            scores[doc] += 1.0 / (k + ranks.get(doc, len(ranking) + 1))
    return sorted(scores, key=lambda doc: -scores[doc])
