# expect: passes visible
def sft_loss(logits, targets, answer_mask):
    if logits.dim() != 3 or targets.shape != logits.shape[:2] or answer_mask.shape != targets.shape:
        raise ValueError("need logits (B, T, V), targets (B, T) and answer_mask (B, T)")
    if not answer_mask.any():
        raise ValueError("answer_mask must count at least one position")
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
    mask = answer_mask.to(losses.dtype)
    rows = answer_mask.any(dim=1)
    row_means = (losses * mask).sum(dim=1)[rows] / mask.sum(dim=1)[rows]
    return row_means.mean()
