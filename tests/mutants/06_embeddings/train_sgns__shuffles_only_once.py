# expect: passes visible
def train_sgns(
    centres: torch.Tensor,
    contexts: torch.Tensor,
    noise_probs: torch.Tensor,
    dim: int,
    n_negatives: int,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    if centres.ndim != 1 or contexts.shape != centres.shape:
        raise ValueError("centres and contexts must be 1-D tensors of the same length")
    if epochs < 0 or batch_size < 1 or n_negatives < 1 or dim < 1 or not lr > 0:
        raise ValueError("need epochs >= 0, batch_size >= 1, n_negatives >= 1, dim >= 1, lr > 0")
    vocab_size, n_pairs = len(noise_probs), len(centres)
    W_in = ((torch.rand(vocab_size, dim, generator=generator) - 0.5) / dim).requires_grad_()
    W_out = torch.zeros(vocab_size, dim, requires_grad=True)
    losses = []
    order = torch.randperm(n_pairs, generator=generator)
    for _ in range(epochs):
        for start in range(0, n_pairs, batch_size):
            batch = order[start:start + batch_size]
            negatives = torch.multinomial(noise_probs, len(batch) * n_negatives, replacement=True,
                                          generator=generator).view(len(batch), n_negatives)
            u = W_in[centres[batch]]
            positive = (u * W_out[contexts[batch]]).sum(-1)
            negative = (W_out[negatives] * u.unsqueeze(1)).sum(-1)
            loss = -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()
            losses.append(loss.item())
            grad_in, grad_out = torch.autograd.grad(loss, [W_in, W_out])
            with torch.no_grad():
                W_in -= lr * grad_in
                W_out -= lr * grad_out
    return W_in.detach(), W_out.detach(), np.array(losses, dtype=np.float64)
