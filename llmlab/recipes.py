"""Training recipes for the character-level GPT of lecture 08, in one place.

- `REFERENCE_MODEL` / `REFERENCE_TRAIN`: the baseline recipe every faster recipe is measured
  against: 4 layers, 4 heads, 128 channels, context 64, batch 12, AdamW at lr 1e-3 with 100
  warm-up steps and cosine decay to 1e-4 over 2000 steps, no dropout.
- `LECTURE_MODEL` / `LECTURE_TRAIN`: what lecture 08 pre-trains, tuned to reach the reference's
  final validation loss in a fraction of its training time on a laptop CPU.

`python -m llmlab.bench gpt` trains both and reports how long the lecture's recipe needs to reach
the reference's final validation loss. The model configs leave `vocab_size` at its default: call
`model_config(...)` to get one for a given vocabulary.
"""

from __future__ import annotations

from dataclasses import replace

from llmlab.gpt import GPTConfig
from llmlab.train import TrainConfig

REFERENCE_MODEL = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
REFERENCE_TRAIN = TrainConfig(batch_size=12, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                              max_iters=2000, eval_interval=250)

# Half the width (a quarter of the weights per block), so a step on a batch of 32 windows costs
# no more than a reference step on 12; a ten times higher peak learning rate, which a small
# model tolerates; and a schedule of 900 steps instead of 2000.
LECTURE_MODEL = GPTConfig(n_layer=4, n_head=4, n_embd=64, block_size=64, dropout=0.0)
LECTURE_TRAIN = TrainConfig(batch_size=32, lr=1e-2, min_lr=1e-4, warmup_iters=100,
                            max_iters=900, eval_interval=100)


def model_config(base: GPTConfig, vocab_size: int) -> GPTConfig:
    """`base` with the vocabulary size of the data it will be trained on."""
    return replace(base, vocab_size=vocab_size)
