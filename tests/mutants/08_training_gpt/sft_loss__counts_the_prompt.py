# expect: fails visible
def sft_loss(logits, targets, answer_mask):
    if logits.dim() != 3 or targets.shape != logits.shape[:2] or answer_mask.shape != targets.shape:
        raise ValueError("need logits (B, T, V), targets (B, T) and answer_mask (B, T)")
    if not answer_mask.any():
        raise ValueError("answer_mask must count at least one position")
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             reduction="none")
    return losses[~answer_mask.reshape(-1)].mean()
