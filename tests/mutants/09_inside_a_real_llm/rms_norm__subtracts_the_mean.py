# expect: fails visible
def rms_norm(x, weight, eps=1e-5):
    dtype = torch.promote_types(x.dtype, torch.float32)
    h = x.to(dtype)
    h = h - h.mean(dim=-1, keepdim=True)
    normed = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (normed * weight.to(dtype)).to(x.dtype)
