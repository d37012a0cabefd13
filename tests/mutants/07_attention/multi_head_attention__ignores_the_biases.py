# expect: passes visible
def multi_head_attention(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                         n_heads, mask=None):
    B, T, E = x.shape
    if E % n_heads:
        raise ValueError("embedding size not divisible by n_heads")
    d = E // n_heads
    q, k, v = (x @ in_proj_weight.T).split(E, dim=-1)
    q, k, v = (t.reshape(B, T, n_heads, d).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    heads = (weights @ v).transpose(1, 2).reshape(B, T, E)
    return heads @ out_proj_weight.T, weights
