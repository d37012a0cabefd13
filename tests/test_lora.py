"""llmlab.lora: the LoRA layer, wrapping a GPT, freezing, merging, counting parameters."""

import pytest
import torch
from torch import nn

from llmlab.gpt import GPT, GPTConfig
from llmlab.lora import LoRALinear, add_lora, count_parameters, merge_lora

torch.set_num_threads(1)  # tiny tensors: more threads only oversubscribe a shared 2-core machine


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11))


def test_lora_linear_starts_equal_to_its_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=4)
    x = torch.randn(3, 4, 6)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_A) > 0 and torch.count_nonzero(layer.lora_B) == 0
    assert layer.lora_A.shape == (2, 6) and layer.lora_B.shape == (5, 2)
    assert layer.scale == 2.0 and LoRALinear(nn.Linear(6, 5), r=3).scale == 1.0


def test_lora_linear_freezes_the_base_and_computes_the_low_rank_update():
    torch.manual_seed(1)
    base = nn.Linear(4, 3)
    layer = LoRALinear(base, r=2, alpha=1.0)
    assert layer.base is base and not any(p.requires_grad for p in base.parameters())
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 4)
    expected = x @ (base.weight + 0.5 * layer.lora_B @ layer.lora_A).T + base.bias
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert torch.allclose(layer.merged()(x), expected, atol=1e-6)
    layer(x).sum().backward()
    assert base.weight.grad is None and layer.lora_B.grad is not None


def test_lora_linear_without_bias_and_bad_arguments():
    layer = LoRALinear(nn.Linear(4, 4, bias=False), r=1)
    assert layer.merged().bias is None
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(4, 4), r=0)
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv1d(4, 4, 1), r=1)


def test_generator_makes_initialisation_reproducible():
    a = LoRALinear(nn.Linear(8, 8), r=2, generator=torch.Generator().manual_seed(3))
    b = LoRALinear(nn.Linear(8, 8), r=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.lora_A, b.lora_A)


def test_add_lora_wraps_attention_freezes_the_rest_and_keeps_the_output():
    model = small_gpt()
    idx = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(0))
    before, _ = model(idx)
    wrapped = add_lora(model, r=2)
    names = ("c_attn", "c_proj")
    assert wrapped == [f"transformer.h.{i}.attn.{n}" for i in range(2) for n in names]
    assert torch.equal(model(idx)[0], before)
    trainable, total = count_parameters(model)
    # c_attn is 16 -> 48, c_proj 16 -> 16: r * (in + out) per wrapped layer
    assert trainable == 2 * 2 * ((16 + 48) + (16 + 16))
    assert total == GPT(model.config).num_params() + trainable
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())


def test_training_lora_changes_only_the_adapters_and_merging_keeps_the_function():
    model = small_gpt()
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    add_lora(model, r=2, targets=("c_attn", "mlp.c_fc"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(11, (4, 8), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(20):
        _, loss = model(idx, idx.roll(1, dims=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        original = name.replace(".base.", ".")
        if original in frozen:
            assert torch.equal(p, frozen[original]), name
    out = model(idx)[0]
    assert merge_lora(model) == 4
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert torch.allclose(model(idx)[0], out, atol=1e-5)


def test_add_lora_needs_a_matching_layer():
    with pytest.raises(ValueError):
        add_lora(small_gpt(), r=1, targets=("no_such_layer",))
