# expect: fails visible
def top_p_filter(logits, p):
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if p == 1.0:
        return logits.clone()
    sorted_probs, order = torch.softmax(logits.double(), dim=-1).sort(dim=-1, descending=True)
    drop = torch.zeros_like(sorted_probs, dtype=torch.bool).scatter(
        -1, order, sorted_probs.cumsum(dim=-1) > p)
    return logits.masked_fill(drop, float("-inf"))
