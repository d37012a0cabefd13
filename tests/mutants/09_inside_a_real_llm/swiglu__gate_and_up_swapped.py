# expect: fails visible
def swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.linear(x, w_gate) * F.silu(F.linear(x, w_up)), w_down)
