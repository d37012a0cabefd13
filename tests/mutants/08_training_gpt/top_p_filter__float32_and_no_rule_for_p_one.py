# expect: passes visible
def top_p_filter(logits, p):
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    n_kept = (before < p).sum(dim=-1, keepdim=True)
    last_kept = sorted_probs.gather(-1, n_kept - 1)
    return logits.masked_fill(probs < last_kept, float("-inf"))
