"""Pre-training a language model: batches of windows, AdamW, warm-up and cosine decay, evaluation.

Definitions used everywhere in the course (lecture 08 and `python -m llmlab.bench gpt`):

- A training batch is `batch_size` windows of `block_size + 1` consecutive ids taken at random
  offsets of the training ids; the model reads the first `block_size` and predicts the next id at
  every position.
- The learning rate rises linearly from 0 to `lr` over `warmup_iters` steps, then follows half a
  cosine down to `min_lr` at step `max_iters`.
- Validation loss is the mean cross-entropy (nats per token; per character for a character-level
  model) over **all** non-overlapping windows of the whole validation split, in eval mode.
- Training seconds count only optimisation steps, never evaluation or checkpointing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmlab.gpt import GPT, GPTConfig


@dataclass
class TrainConfig:
    batch_size: int = 12
    max_iters: int = 2000  # optimisation steps; the cosine reaches min_lr here
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1  # applied to matrices only, not to biases or layer-norm gains
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # clip the global gradient norm (0 = off)
    eval_interval: int = 250  # steps between validation evaluations (0 = only at the end)
    seed: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimisation step `step` (0-based): linear warm-up, then cosine decay."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    if step >= cfg.max_iters:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def get_batch(data: torch.Tensor, batch_size: int, block_size: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs x (B, T) and targets y (B, T), where y is x shifted left by one."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i:i + block_size] for i in starts.tolist()])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in starts.tolist()])
    return x, y


@torch.no_grad()
def evaluate(model: GPT, data: torch.Tensor, batch_size: int = 64) -> float:
    """Mean cross-entropy over all non-overlapping windows of `data`, in eval mode.

    Window i reads ids [i*T, (i+1)*T) and predicts ids [i*T + 1, (i+1)*T + 1), T = block_size;
    every prediction counts once, so the result is nats per token over the whole split (the last
    few ids that do not fill a window are left out).
    """
    T = model.config.block_size
    n = (len(data) - 1) // T
    if n < 1:
        raise ValueError(f"need more than {T} ids to evaluate, got {len(data)}")
    x_all = data[: n * T].view(n, T)
    y_all = data[1: n * T + 1].view(n, T)
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, n, batch_size):
        logits, _ = model(x_all[i:i + batch_size])
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                 y_all[i:i + batch_size].reshape(-1), reduction="sum").item()
    model.train(was_training)
    return total / (n * T)


def configure_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings only (not biases or norm gains)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


@dataclass
class History:
    """What happened during `train`; `train_seconds` excludes evaluation and checkpoints."""

    steps: list[int] = field(default_factory=list)  # step of every training-loss entry
    train_loss: list[float] = field(default_factory=list)  # loss of that step's batch
    eval_steps: list[int] = field(default_factory=list)  # steps completed at each evaluation
    eval_seconds: list[float] = field(default_factory=list)  # training seconds at each evaluation
    val_loss: list[float] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def best_val_loss(self) -> float:
        return min(self.val_loss) if self.val_loss else math.nan

    def seconds_to(self, target: float) -> float | None:
        """Training seconds at the first evaluation whose validation loss is <= target, or None."""
        for seconds, loss in zip(self.eval_seconds, self.val_loss, strict=True):
            if loss <= target:
                return seconds
        return None


def train(model: GPT, train_data: torch.Tensor, valid_data: torch.Tensor | None,
          cfg: TrainConfig, *, progress: bool = True, checkpoint: str | Path | None = None,
          stop: Callable[[History], bool] | None = None) -> History:
    """Pre-train `model` on next-token prediction; returns its `History`.

    `valid_data` is evaluated every `cfg.eval_interval` steps and after the last step. With
    `checkpoint`, the model, optimiser and history are saved there after every evaluation that
    improves the best validation loss. `stop(history)`, called after each evaluation, may end
    training early by returning True.
    """
    from llmlab.progress import tqdm

    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = configure_optimizer(model, cfg)
    history = History()
    model.train()
    bar = tqdm(range(cfg.max_iters), desc="training", disable=not progress)
    for step in bar:
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(train_data, cfg.batch_size, model.config.block_size, generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        history.train_seconds += time.perf_counter() - started
        history.steps.append(step)
        history.train_loss.append(loss.item())
        last = step == cfg.max_iters - 1
        due = cfg.eval_interval and (step + 1) % cfg.eval_interval == 0
        if valid_data is not None and (last or due):
            val = evaluate(model, valid_data)
            improved = not history.val_loss or val < history.best_val_loss
            history.eval_steps.append(step + 1)
            history.eval_seconds.append(history.train_seconds)
            history.val_loss.append(val)
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}")
            if checkpoint is not None and improved:
                save_checkpoint(checkpoint, model, optimizer, history, cfg)
            if stop is not None and stop(history):
                break
    bar.close()
    return history


def save_checkpoint(path: str | Path, model: GPT, optimizer: torch.optim.Optimizer | None,
                    history: History | None, cfg: TrainConfig | None) -> None:
    """Everything needed to rebuild the model (and resume training) in one file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "model_config": asdict(model.config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": asdict(history) if history is not None else None,
        "train_config": asdict(cfg) if cfg is not None else None,
    }, path)


def load_checkpoint(path: str | Path) -> tuple[GPT, dict]:
    """The model saved by `save_checkpoint` (in eval mode), and the whole saved dictionary."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's legacy global generator (model initialisation uses torch's)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
