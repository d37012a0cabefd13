# expect: fails visible
def multi_head_attention(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                         n_heads, mask=None):
    B, T, E = x.shape
    if E % n_heads:
        raise ValueError("embedding size not divisible by n_heads")
    d = E // n_heads
    q, k, v = F.linear(x, in_proj_weight, in_proj_bias).split(E, dim=-1)
    # channels dealt out to the heads in turn (h, h + H, h + 2H, ...) instead of in blocks
    q, k, v = (t.reshape(B, T, d, n_heads).permute(0, 3, 1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    heads = (weights @ v).permute(0, 2, 3, 1).reshape(B, T, E)
    return F.linear(heads, out_proj_weight, out_proj_bias), weights
