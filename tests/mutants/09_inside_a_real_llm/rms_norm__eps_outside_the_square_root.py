# expect: passes visible
def rms_norm(x, weight, eps=1e-5):
    dtype = torch.promote_types(x.dtype, torch.float32)
    h = x.to(dtype)
    normed = h / (h.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)
    return (normed * weight.to(dtype)).to(x.dtype)
