# expect: fails visible
def mlp_loss_and_gradients(
    params: dict[str, np.ndarray], X: ArrayLike, y: ArrayLike
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy of the ReLU network and its gradients by backpropagation."""
    W1 = np.asarray(params["W1"], dtype=np.float64)
    b1 = np.asarray(params["b1"], dtype=np.float64)
    W2 = np.asarray(params["W2"], dtype=np.float64)
    b2 = np.asarray(params["b2"], dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    rows = np.arange(n)
    # forward
    h_pre = X @ W1 + b1
    h = np.maximum(h_pre, 0.0)
    logits = h @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(np.mean(log_probs[rows, y]))
    # backward
    d_logits = np.exp(log_probs)
    d_logits[rows, y] -= 1.0
    d_logits /= n
    d_h = d_logits @ W2.T
    d_h_pre = d_h * (h_pre > 0)
    grads = {
        "W1": X.T @ d_h_pre,
        "b1": d_h_pre.mean(axis=0),
        "W2": h.T @ d_logits,
        "b2": d_logits.mean(axis=0),
    }
    return loss, grads
