# expect: passes visible
def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    if r_chosen.shape != r_rejected.shape or r_chosen.ndim != 1 or r_chosen.numel() == 0:
        raise ValueError("need two non-empty 1-D tensors of the same shape")
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()
