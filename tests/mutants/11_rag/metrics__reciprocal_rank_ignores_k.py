# expect: passes visible
def rank_topics(chunk_ids, chunk_topics: list[str]) -> list[str]:
    """The distinct topics of the ranked chunks, in order of their best chunk."""
    return list(dict.fromkeys(chunk_topics[i] for i in chunk_ids))


def recall_at_k(ranked_topics: list[str], gold_topics: list[str], k: int) -> float:
    """1.0 if any gold topic is among the first k ranked topics, else 0.0."""
    gold = set(gold_topics)
    return 1.0 if any(topic in gold for topic in ranked_topics[:k]) else 0.0


def mean_reciprocal_rank(ranked_topics: list[str], gold_topics: list[str], k: int = 10) -> float:
    """1 / the position of the first gold topic among the first k ranked topics (0.0 if none)."""
    gold = set(gold_topics)
    for rank, topic in enumerate(ranked_topics, start=1):
        if topic in gold:
            return 1.0 / rank
    return 0.0
