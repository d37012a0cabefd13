# expect: passes visible
def train_mlp_torch(
    X: torch.Tensor, y: torch.Tensor, n_classes: int, hidden: int, n_epochs: int, lr: float,
    batch_size: int, generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train relu(X @ W1 + b1) @ W2 + b2 with mini-batch SGD on the mean cross-entropy."""
    n, d = X.shape
    params = {
        "W1": torch.randn(d, hidden, generator=generator) * (2.0 / d) ** 0.5,
        "b1": torch.zeros(hidden),
        "W2": torch.randn(hidden, n_classes, generator=generator) * (1.0 / hidden) ** 0.5,
        "b2": torch.zeros(n_classes),
    }
    for p in params.values():
        p.requires_grad_(True)
    losses = []
    for _ in range(n_epochs):
        order = torch.randperm(n, generator=generator)
        batch_losses = []
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            hidden_layer = torch.relu(X[rows] @ params["W1"] + params["b1"])
            logits = hidden_layer @ params["W2"] + params["b2"]
            loss = torch.nn.functional.cross_entropy(logits, y[rows])
            loss.backward()
            with torch.no_grad():  # the update itself must not be recorded by autograd
                for p in params.values():
                    p -= lr * p.grad
                    p.grad = None
            batch_losses.append(loss.item() * len(rows))
        losses.append(sum(batch_losses) / n)
    return {name: p.detach() for name, p in params.items()}, losses
