# expect: fails visible
def attend_step(x_t, w_q, w_k, w_v, cache):
    n_heads, max_len, head_dim = cache.k.shape
    t = cache.length
    if t >= max_len:
        raise ValueError("the cache is full")
    q = (w_q @ x_t).reshape(n_heads, head_dim)
    keys, values = cache.k[:, :t], cache.v[:, :t]  # the past only: x_t does not see itself
    weights = (torch.einsum("hd,htd->ht", q, keys) / math.sqrt(head_dim)).softmax(dim=-1)
    out = torch.einsum("ht,htd->hd", weights, values).reshape(n_heads * head_dim)
    cache.k[:, t] = (w_k @ x_t).reshape(n_heads, head_dim)
    cache.v[:, t] = (w_v @ x_t).reshape(n_heads, head_dim)
    cache.length = t + 1
    return out
