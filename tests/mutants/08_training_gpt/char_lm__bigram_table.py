# expect: fails visible
def train_char_lm(get_batch, vocab_size: int, seed: int) -> nn.Module:
    """Build a character-level language model, train it on batches from get_batch, return it."""

    class Bigram(nn.Module):
        """A table of next-character logits: sees only the current character."""

        def __init__(self, vocab_size, block_size):
            super().__init__()
            self.block_size = block_size
            self.table = nn.Embedding(vocab_size, vocab_size)

        def forward(self, idx):
            return self.table(idx)

    torch.manual_seed(seed)
    model = Bigram(vocab_size, block_size=32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.0)
    for _ in range(300):
        x, y = get_batch(32, 32)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


# Trains once, here; the tests below score `char_lm` and check the budget `char_batches` counted.
char_batches = CharBatches(seed=0)
char_lm = train_char_lm(char_batches, CHAR_VOCAB.size, seed=0)
