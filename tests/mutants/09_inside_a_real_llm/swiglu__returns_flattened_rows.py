# expect: passes visible
def swiglu(x, w_gate, w_up, w_down):
    rows = x.reshape(-1, x.shape[-1])  # (N, C) for the matrix products
    return (F.silu(rows @ w_gate.T) * (rows @ w_up.T)) @ w_down.T
