"""LoRA: low-rank adaptation, the parameter-efficient way to fine-tune a pre-trained model.

Full fine-tuning updates every weight matrix W (out x in). LoRA freezes W and learns a low-rank
correction instead:

    y = x W^T + b  +  (alpha / r) * x A^T B^T        A: (r, in), B: (out, r), r << min(in, out)

Only A and B are trained: r * (in + out) numbers instead of in * out. B starts at zero, so the
wrapped layer computes exactly what the pre-trained layer did until training moves B; A starts
random (as in the LoRA paper), so the gradient of B is not zero either. The factor alpha / r keeps
the size of the update comparable when r changes. After training, `merged()` folds the update into
an ordinary `nn.Linear` (W + (alpha / r) B A), so inference costs nothing extra.

`add_lora(model, ...)` wraps the chosen linear layers of a model (by default the attention layers
of `llmlab.gpt.GPT`) and freezes every other parameter; `count_parameters` reports how many
parameters are trained.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Names (suffixes of module names) of the GPT layers `add_lora` wraps unless told otherwise:
#: the query/key/value projection and the output projection of every attention block.
DEFAULT_TARGETS: tuple[str, ...] = ("attn.c_attn", "attn.c_proj")


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update `(alpha / r) * B @ A`.

    Args:
        base: the pre-trained layer; its weight and bias are frozen (requires_grad=False) and kept
            as they are (not copied).
        r: rank of the update, at least 1.
        alpha: scale numerator; the update is multiplied by alpha / r (default alpha = r, scale 1).
        generator: optional torch generator for A's random initialisation.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if r < 1:
            raise ValueError(f"rank r must be at least 1, got {r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.alpha = float(r if alpha is None else alpha)
        self.scale = self.alpha / r
        weight = base.weight
        # A ~ U(-1/sqrt(in), 1/sqrt(in)), like nn.Linear's own initialisation; B = 0
        bound = 1.0 / math.sqrt(base.in_features)
        a = torch.rand(r, base.in_features, generator=generator, dtype=weight.dtype)
        self.lora_A = nn.Parameter((2 * a - 1) * bound)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=weight.dtype))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The learned change of the weight matrix, (out, in): scale * B @ A."""
        return self.scale * self.lora_B @ self.lora_A

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` computing the same function (weight W + scale * B @ A)."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                          dtype=self.base.weight.dtype)
        layer.weight.copy_(self.base.weight + self.delta_weight())
        if self.base.bias is not None:
            layer.bias.copy_(self.base.bias)
        return layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}"


def add_lora(model: nn.Module, r: int, alpha: float | None = None,
             targets: tuple[str, ...] = DEFAULT_TARGETS,
             generator: torch.Generator | None = None) -> list[str]:
    """Freeze `model` and replace its linear layers named by `targets` with `LoRALinear` (in place).

    A layer is wrapped if its module name ends with one of `targets` (e.g. "attn.c_attn" matches
    "transformer.h.0.attn.c_attn"). Afterwards only the LoRA matrices require gradients. Returns
    the names of the wrapped layers; raises ValueError if nothing matched.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and any(name.endswith(t) for t in targets)]
    if not chosen:
        raise ValueError(f"no nn.Linear layer of the model matches {targets}")
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, generator))
    return chosen


def merge_lora(model: nn.Module) -> int:
    """Replace every `LoRALinear` in `model` by its merged `nn.Linear` in place; return how many."""
    wrapped = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).merged())
    return len(wrapped)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters; a shared (tied) tensor is counted once."""
    params = list(model.parameters())  # parameters() yields a shared tensor only once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
