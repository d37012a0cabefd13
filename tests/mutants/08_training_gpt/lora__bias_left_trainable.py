# expect: fails visible
class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha, generator):
        super().__init__()
        if r < 1:
            raise ValueError(f"r must be at least 1, got {r}")
        self.base = base
        base.weight.requires_grad_(False)
        self.scale = alpha / r
        a = torch.randn(r, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_A = nn.Parameter(a)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T
