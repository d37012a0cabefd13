# expect: fails visible
class MiniGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_head: int, n_layer: int):
        super().__init__()
        if n_embd % n_head:
            raise ValueError("n_embd must be divisible by n_head")
        self.block_size, self.n_head = block_size, n_head
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(dict(
                ln_1=nn.LayerNorm(n_embd), qkv=nn.Linear(n_embd, 3 * n_embd),
                proj=nn.Linear(n_embd, n_embd), ln_2=nn.LayerNorm(n_embd),
                fc_1=nn.Linear(n_embd, 4 * n_embd), fc_2=nn.Linear(4 * n_embd, n_embd),
            ))
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError("sequence too long")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T))
        C, H = x.shape[-1], self.n_head
        for block in self.blocks:
            q, k, v = block["qkv"](block["ln_1"](x)).split(C, dim=-1)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + block["proj"](y.transpose(1, 2).reshape(B, T, C))
            x = x + block["fc_2"](F.gelu(block["fc_1"](block["ln_2"](x))))
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss
