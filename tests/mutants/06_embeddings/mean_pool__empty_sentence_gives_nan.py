# expect: passes visible
def mean_pool(token_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if token_vectors.ndim != 3 or tuple(mask.shape) != tuple(token_vectors.shape[:2]):
        raise ValueError("need shapes (B, T, d) and (B, T)")
    weights = mask.to(token_vectors.dtype).unsqueeze(-1)
    return (token_vectors * weights).sum(dim=1) / weights.sum(dim=1)
