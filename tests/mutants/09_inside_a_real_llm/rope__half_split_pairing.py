# expect: passes visible
def rope(x, positions, base=10000.0):
    head_dim = x.shape[-1]
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    angles = positions.to(torch.float64)[:, None] * base**-exponents
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : head_dim // 2], x[..., head_dim // 2 :]  # rotate_half's pairs (j, j + d/2)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
