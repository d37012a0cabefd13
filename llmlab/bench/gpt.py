"""`python -m llmlab.bench gpt`: lecture 08's pre-training recipe against the reference recipe.

Trains, in one run and alternating seed by seed (so that a busy machine slows both alike), the
reference recipe and the lecture's recipe from `llmlab.recipes` on the character-level corpus of
`llmlab.text`, and prints one JSON line:

    {"lecture": {"seconds_to_ref_loss", "best_val_loss", "train_seconds", "params"},
     "reference": {"final_val_loss", "train_seconds", "params"},
     "ratio", "threads", "python", "corpus_sha256"}

Every figure is the median over the seeds. `seconds_to_ref_loss` is the training time at the first
evaluation of the lecture's recipe whose validation loss is at most the reference's (median)
final validation loss, or null if none is; `ratio` = that time / the reference's training
seconds. Validation loss is `llmlab.train.evaluate`; training seconds exclude evaluation.
Targets on 2 CPU cores: ratio <= 0.6 and seconds_to_ref_loss <= 90.

`--quick` runs a few steps of each with one seed, to check that the benchmark works.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
from dataclasses import replace

import torch

from llmlab.gpt import GPT, GPTConfig
from llmlab.recipes import (
    LECTURE_MODEL,
    LECTURE_TRAIN,
    REFERENCE_MODEL,
    REFERENCE_TRAIN,
    model_config,
)
from llmlab.text import corpus_sha256, reference_char_data
from llmlab.train import History, TrainConfig, train


def run(model_cfg: GPTConfig, train_cfg: TrainConfig, seed: int, train_data: torch.Tensor,
        valid_data: torch.Tensor, label: str) -> tuple[History, int]:
    """Train one freshly initialised model with `seed`; return its history and parameter count."""
    torch.manual_seed(seed)
    model = GPT(model_cfg)
    history = train(model, train_data, valid_data, replace(train_cfg, seed=seed), progress=False)
    print(f"{label} seed {seed}: val loss {history.val_loss[-1]:.4f}, "
          f"{history.train_seconds:.1f} training seconds", file=sys.stderr, flush=True)
    return history, model.num_params()


def median_or_none(values: list[float | None]) -> float | None:
    """Median where None counts as 'never' (infinitely late); None if the median is never."""
    m = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(m) else m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench gpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe (default 3)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default 2: the targets are for 2 CPU cores)")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps and one seed: checks that the benchmark runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    vocab, train_ids, valid_ids = reference_char_data()
    train_data, valid_data = torch.from_numpy(train_ids), torch.from_numpy(valid_ids)
    recipes = {"reference": (REFERENCE_MODEL, REFERENCE_TRAIN),
               "lecture": (LECTURE_MODEL, LECTURE_TRAIN)}
    seeds = list(range(args.seeds))
    if args.quick:
        recipes = {name: (m, replace(t, max_iters=4, warmup_iters=2, eval_interval=2))
                   for name, (m, t) in recipes.items()}
        seeds = [0]

    results: dict[str, list[tuple[History, int]]] = {name: [] for name in recipes}
    for seed in seeds:  # alternate the recipes, so a change in machine load hits both
        for name, (model_cfg, train_cfg) in recipes.items():
            results[name].append(run(model_config(model_cfg, vocab.size), train_cfg, seed,
                                     train_data, valid_data, name))

    reference = [h for h, _ in results["reference"]]
    lecture = [h for h, _ in results["lecture"]]
    ref_loss = statistics.median(h.val_loss[-1] for h in reference)
    ref_seconds = statistics.median(h.train_seconds for h in reference)
    seconds_to = median_or_none([h.seconds_to(ref_loss) for h in lecture])
    report = {
        "lecture": {
            "seconds_to_ref_loss": None if seconds_to is None else round(seconds_to, 2),
            "best_val_loss": round(statistics.median(h.best_val_loss for h in lecture), 4),
            "train_seconds": round(statistics.median(h.train_seconds for h in lecture), 2),
            "params": results["lecture"][0][1],
        },
        "reference": {
            "final_val_loss": round(ref_loss, 4),
            "train_seconds": round(ref_seconds, 2),
            "params": results["reference"][0][1],
        },
        "ratio": None if seconds_to is None else round(seconds_to / ref_seconds, 3),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "corpus_sha256": corpus_sha256(),
    }
    print(json.dumps(report))
    return 0
