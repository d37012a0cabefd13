# expect: passes visible
def train_char_lm(get_batch, vocab_size: int, seed: int) -> nn.Module:
    """Build a character-level language model, train it on batches from get_batch, return it."""
    class CharGPT(nn.Module):
        """One pre-norm Transformer block: for 300 short steps, wide beats deep."""

        def __init__(self, vocab_size, block_size, n_embd, n_head):
            super().__init__()
            self.block_size, self.n_head = block_size, n_head
            self.tok_emb = nn.Embedding(vocab_size, n_embd)
            self.pos_emb = nn.Embedding(block_size, n_embd)
            self.ln_1, self.ln_2, self.ln_f = (nn.LayerNorm(n_embd) for _ in range(3))
            self.qkv, self.proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
            self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                     nn.Linear(4 * n_embd, n_embd))
            self.head = nn.Linear(n_embd, vocab_size, bias=False)

        def forward(self, idx):
            B, T = idx.shape
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(T))
            q, k, v = self.qkv(self.ln_1(x)).split(x.shape[-1], dim=-1)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + self.mlp(self.ln_2(x))
            return self.head(self.ln_f(x))

    torch.manual_seed(seed)
    # A cautious learning rate, fine for long runs, too slow for 300 steps.
    steps, batch_size, block_size, peak_lr, warmup = 300, 32, 32, 3e-3, 20
    model = CharGPT(vocab_size, block_size, n_embd=96, n_head=4)  # 134,880 parameters
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95),
                                  weight_decay=0.1)
    model.train()
    for step in range(steps):
        # Linear warm-up, then half a cosine down to a tenth of the peak.
        if step < warmup:
            lr = peak_lr * (step + 1) / warmup
        else:
            lr = peak_lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(batch_size, block_size)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()


# Trains once, here; the tests below score `char_lm` and check the budget `char_batches` counted.
char_batches = CharBatches(seed=0)
char_lm = train_char_lm(char_batches, CHAR_VOCAB.size, seed=0)