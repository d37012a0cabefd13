# expect: fails visible
def sample_next(logits, temperature, generator):
    if logits.dim() != 2:
        raise ValueError("logits must have shape (B, V)")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]
