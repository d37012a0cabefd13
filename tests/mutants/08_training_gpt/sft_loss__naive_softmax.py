# expect: passes visible
def sft_loss(logits, targets, answer_mask):
    if logits.dim() != 3 or targets.shape != logits.shape[:2] or answer_mask.shape != targets.shape:
        raise ValueError("need logits (B, T, V), targets (B, T) and answer_mask (B, T)")
    if not answer_mask.any():
        raise ValueError("answer_mask must count at least one position")
    probs = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)
    picked = probs.gather(-1, targets[..., None])[..., 0]
    return -torch.log(picked[answer_mask]).mean()
