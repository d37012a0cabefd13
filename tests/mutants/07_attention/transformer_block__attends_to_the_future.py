# expect: fails visible
def transformer_block(x, params, n_heads, norm_first=True):
    B, T, C = x.shape
    d = C // n_heads

    def ln(t, name):
        return F.layer_norm(t, (C,), params[f"{name}.weight"], params[f"{name}.bias"], eps=1e-5)

    def attn(t):
        q, k, v = F.linear(t, params["attn.c_attn.weight"], params["attn.c_attn.bias"]).split(C, -1)
        q, k, v = (z.reshape(B, T, n_heads, d).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        weights = scores.softmax(dim=-1)
        heads = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return F.linear(heads, params["attn.c_proj.weight"], params["attn.c_proj.bias"])

    def mlp(t):
        hidden = F.gelu(F.linear(t, params["mlp.c_fc.weight"], params["mlp.c_fc.bias"]))
        return F.linear(hidden, params["mlp.c_proj.weight"], params["mlp.c_proj.bias"])

    if norm_first:
        x = x + attn(ln(x, "ln_1"))
        return x + mlp(ln(x, "ln_2"))
    x = ln(x + attn(x), "ln_1")
    return ln(x + mlp(x), "ln_2")
