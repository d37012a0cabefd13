# expect: fails visible
def train_reward_model(
    chosen: torch.Tensor, rejected: torch.Tensor, n_steps: int, lr: float
) -> tuple[torch.Tensor, np.ndarray]:
    if chosen.ndim != 2 or chosen.shape != rejected.shape or chosen.shape[0] == 0:
        raise ValueError("need two non-empty 2-D tensors of the same shape")
    if n_steps < 0 or not lr > 0:
        raise ValueError("bad n_steps or lr")
    w = torch.zeros(chosen.shape[1], dtype=chosen.dtype, requires_grad=True)
    difference = (chosen - rejected).detach()
    losses = np.empty(n_steps)
    for k in range(n_steps):
        loss = -F.logsigmoid(difference @ w).mean()
        losses[k] = loss.item()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
    return w.detach(), losses
