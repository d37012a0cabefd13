"""llmlab.gpt and llmlab.train: shapes, causality, initial loss, learning, sampling."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.gpt import GPT, Block, GPTConfig, sample_next, top_k_filter, top_p_filter
from llmlab.train import (
    TrainConfig,
    configure_optimizer,
    evaluate,
    get_batch,
    load_checkpoint,
    lr_at,
    train,
)

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: thread start-up costs more than it saves on a shared 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def model(config: GPTConfig = TINY, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def test_forward_shapes_and_loss():
    m = model()
    idx = torch.randint(0, 11, (3, 8))
    logits, loss = m(idx)
    assert logits.shape == (3, 8, 11) and loss is None
    logits, loss = m(idx[:, :5], idx[:, 1:6])
    assert logits.shape == (3, 5, 11) and loss.shape == ()
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 9, dtype=torch.long))


def test_config_is_validated():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_head=3, n_embd=16)
    with pytest.raises(ValueError):
        GPTConfig(dropout=1.0)


def test_future_tokens_never_change_earlier_logits():
    m = model().eval()
    idx = torch.randint(0, 11, (2, 8))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 3) % 11
    a, _ = m(idx)
    b, _ = m(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_initial_loss_is_close_to_log_vocab_size():
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=97)
    m = model(config)
    idx = torch.randint(0, 97, (8, 17), generator=torch.Generator().manual_seed(1))
    _, loss = m(idx[:, :-1], idx[:, 1:])
    assert abs(loss.item() - math.log(97)) < 0.1


def test_weights_are_tied_and_counted_once():
    m = model()
    assert m.lm_head.weight is m.transformer.wte.weight
    unique = {id(p): p.numel() for p in m.parameters()}
    assert m.num_params() == sum(unique.values())
    assert m.num_params(non_embedding=True) == m.num_params() - 8 * 16


def test_attention_maps_are_causal_distributions_matching_the_fused_path():
    m = model().eval()
    idx = torch.randint(0, 11, (2, 8))
    maps = m.attention_maps(idx)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 8, 8)
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 8))
        assert torch.all(w.triu(1) == 0)
    block: Block = m.transformer.h[0]
    x = torch.randn(2, 8, 16)
    fused = block.attn(x)
    explicit, _ = block.attn(x, return_weights=True)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


def test_block_matches_a_hand_written_pre_norm_block():
    block = model().transformer.h[0]
    x = torch.randn(2, 8, 16)
    a = block.attn
    h = F.layer_norm(x, (16,), block.ln_1.weight, block.ln_1.bias, eps=1e-5)
    q, k, v = (h @ a.c_attn.weight.T + a.c_attn.bias).split(16, dim=-1)
    heads = [F.scaled_dot_product_attention(q[..., i:i + 8], k[..., i:i + 8], v[..., i:i + 8],
                                            is_causal=True) for i in (0, 8)]
    x1 = x + torch.cat(heads, dim=-1) @ a.c_proj.weight.T + a.c_proj.bias
    h2 = F.layer_norm(x1, (16,), block.ln_2.weight, block.ln_2.bias, eps=1e-5)
    mlp = block.mlp
    hidden = F.gelu(h2 @ mlp.c_fc.weight.T + mlp.c_fc.bias)
    out = x1 + hidden @ mlp.c_proj.weight.T + mlp.c_proj.bias
    torch.testing.assert_close(block(x), out, rtol=1e-5, atol=1e-5)


def test_one_adamw_step_lowers_the_loss_on_a_fixed_batch():
    m = model()
    idx = torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(2))
    opt = configure_optimizer(m, TrainConfig(lr=1e-2))
    _, before = m(idx[:, :-1], idx[:, 1:])
    opt.zero_grad()
    before.backward()
    opt.step()
    _, after = m(idx[:, :-1], idx[:, 1:])
    assert after.item() < before.item()


def test_optimizer_decays_matrices_only():
    groups = configure_optimizer(model(), TrainConfig()).param_groups
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and groups[0]["weight_decay"] > 0
    assert all(p.dim() < 2 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0


def test_learning_rate_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(1050, cfg) == pytest.approx(5.5e-4)
    assert lr_at(2000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 2001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_batches_are_shifted_windows():
    data = torch.arange(100)
    x, y = get_batch(data, 5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    torch.testing.assert_close(y[:, :-1], x[:, 1:])
    torch.testing.assert_close(x[:, 1:] - x[:, :-1], torch.ones(5, 7, dtype=torch.long))


def test_evaluate_covers_every_non_overlapping_window_in_eval_mode():
    config = GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5, dropout=0.5)
    m = model(config).train()
    data = torch.randint(0, 5, (23,), generator=torch.Generator().manual_seed(3))
    got = evaluate(m, data, batch_size=2)
    assert m.training, "evaluate restores training mode"
    m.eval()
    n = (23 - 1) // 4  # five windows; the last two ids fill no window
    logits, _ = m(data[: n * 4].view(n, 4))
    want = F.cross_entropy(logits.reshape(-1, 5), data[1: n * 4 + 1]).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_training_learns_a_repeating_pattern_and_checkpoints(tmp_path):
    config = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=4)
    data = torch.tensor([0, 1, 2, 3] * 60)
    m = model(config)
    cfg = TrainConfig(batch_size=8, max_iters=120, lr=1e-2, min_lr=1e-3, warmup_iters=10,
                      eval_interval=40)
    history = train(m, data, data, cfg, progress=False, checkpoint=tmp_path / "ckpt.pt")
    assert history.eval_steps == [40, 80, 120]
    assert history.val_loss[-1] < 0.1 < math.log(4)
    assert history.seconds_to(history.val_loss[-1]) <= history.train_seconds
    assert history.seconds_to(-1.0) is None
    restored, state = load_checkpoint(tmp_path / "ckpt.pt")
    assert state["history"]["val_loss"][-1] == pytest.approx(min(history.val_loss))
    idx = data[:8].view(1, 8)
    assert restored(idx)[0].argmax(-1).tolist() == [[1, 2, 3, 0, 1, 2, 3, 0]]


def test_top_k_keeps_the_k_largest_and_ties():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.0]])
    assert torch.isfinite(top_k_filter(logits, 1)).tolist() == [[False, True, False, True, False]]
    assert torch.isfinite(top_k_filter(logits, 3)).sum() == 3
    torch.testing.assert_close(top_k_filter(logits, 99), logits)
    with pytest.raises(ValueError):
        top_k_filter(logits, 0)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p)).tolist()[0]  # noqa: E731
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-9) == [True, False, False, False], "the most likely id is always kept"
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(top_p_filter(shuffled, 0.6)).tolist()[0] == [False, True, False, True]


def test_sampling_greedy_and_filtered():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, 0.0, 1.0]])
    assert sample_next(logits, temperature=0).tolist() == [[1], [0]]
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, 1.0, top_k=1, generator=g) for _ in range(20)], dim=1)
    assert draws[0].eq(1).all() and draws[1].eq(0).all()
    with pytest.raises(ValueError):
        sample_next(logits, temperature=-1)


def test_generate_appends_tokens_and_crops_the_context():
    m = model()
    start = torch.zeros(2, 3, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    out = m.generate(start, 10, temperature=0.8, top_k=5, generator=g)
    assert out.shape == (2, 13) and torch.equal(out[:, :3], start)
    assert m.training, "generate restores training mode"
    greedy = m.generate(start, 10, temperature=0)
    assert torch.equal(greedy, m.generate(start, 10, temperature=0))


def test_dropout_is_active_only_in_training():
    config = GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5, dropout=0.5)
    m = model(config)
    idx = torch.randint(0, 5, (2, 4))
    m.eval()
    torch.testing.assert_close(m(idx)[0], m(idx)[0])
    m.train()
    assert not torch.allclose(m(idx)[0], m(idx)[0])
    assert isinstance(m.transformer.drop, nn.Dropout)
