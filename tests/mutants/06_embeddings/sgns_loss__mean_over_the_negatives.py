# expect: fails visible
def sgns_loss(centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    if (centre.ndim != 2 or context.shape != centre.shape or negatives.ndim != 3
            or negatives.shape[0] != centre.shape[0] or negatives.shape[2] != centre.shape[1]):
        raise ValueError("shapes do not fit")
    positive = (centre * context).sum(-1)
    negative = (negatives * centre.unsqueeze(1)).sum(-1)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).mean(-1)).mean()
