# expect: fails visible
def fit_direction_classifier(texts: list[str], labels: np.ndarray, generator: torch.Generator):
    """Train a classifier of 32-character windows (1 = reversed, 0 = as written); return it."""
    # Full self-attention with no positional information: a bag of characters, blind to order.
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
    C, H, WINDOW, STEPS, BATCH = 32, 4, 3, 150, 64

    def encode(batch):
        return torch.tensor([[ord(c) for c in t] for t in batch])  # ASCII codes 0..127

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(128, C)
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.distance_bias = nn.Parameter(torch.zeros(H, WINDOW + 1))
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))
            self.head = nn.Linear(C, 2)

        def forward(self, ids):
            B, T = ids.shape
            distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # query - key
            outside = torch.zeros(T, T, dtype=torch.bool)
            x = self.embed(ids)
            q, k, v = self.qkv(self.ln_1(x)).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
            weights = scores.masked_fill(outside, float("-inf")).softmax(dim=-1)
            x = x + self.proj((weights @ v).transpose(1, 2).reshape(B, T, C))
            x = x + self.mlp(self.ln_2(x))
            return self.head(x.mean(dim=1))  # average over positions, then two logits

        def predict(self, batch):
            with torch.no_grad():
                return self(encode(batch)).argmax(dim=-1).numpy()

    X, y = encode(texts), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        rows = torch.randint(len(X), (BATCH,), generator=generator)
        loss = F.cross_entropy(model(X[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
