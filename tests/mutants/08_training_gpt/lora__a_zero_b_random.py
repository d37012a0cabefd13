# expect: passes visible
class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha, generator):
        super().__init__()
        if r < 1:
            raise ValueError(f"r must be at least 1, got {r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scale = alpha / r
        b = torch.randn(base.out_features, r, generator=generator) / math.sqrt(r)
        self.lora_A = nn.Parameter(torch.zeros(r, base.in_features))
        self.lora_B = nn.Parameter(b)

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T
