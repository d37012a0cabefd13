# expect: passes visible
def reinforce_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError("logits must be 2-D with at least one row")
    n_steps = logits.shape[0]
    if actions.shape != (n_steps,) or returns.shape != (n_steps,):
        raise ValueError("actions and returns must have shape (T,)")
    log_probs = torch.log(torch.softmax(logits, dim=1))
    chosen = log_probs[torch.arange(n_steps), actions]
    advantage = returns.detach() - torch.as_tensor(baseline, dtype=returns.dtype).detach()
    return -(chosen * advantage.to(logits.dtype)).mean()
