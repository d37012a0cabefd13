# expect: fails visible
def train_step(model, optimizer, x, y, grad_clip=1.0):
    if grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0, got {grad_clip}")
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        _, after = model(x, y)
    return float(after)
