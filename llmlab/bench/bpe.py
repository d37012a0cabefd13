"""`python -m llmlab.bench bpe`: how fast BPE training is, and whether it is still exact.

Prints one JSON line:

- `train_seconds`: wall time of `train_fast` on the whole corpus (`llmlab.text.reference_text()`)
  up to a vocabulary of `vocab_size` = 1024 tokens (target: at most 9 s on 2 cores);
- `same_merges_as_simple`: whether `train_fast` and `train_simple` (which recounts every pair
  after every merge) learn exactly the same merges, in the same order, on the fixed prefix
  `reference_text()[:50_000]` at the same vocabulary size, 1024 — computed on every run (the
  simple trainer takes a few seconds on that prefix);
- `simple_prefix_chars`: the length of that prefix;
- `threads`: CPU threads available to this process (both trainers are single-threaded Python);
- `python`: the Python version (the corpus comes with Python's documentation);
- `corpus_sha256`: which corpus text was used.

It measures and never asserts; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from llmlab.text import corpus_sha256, reference_text
from llmlab.tokenizer import train_fast, train_simple

VOCAB_SIZE = 1024
SIMPLE_PREFIX_CHARS = 50_000


def _threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench bpe",
                                     description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    text = reference_text()

    print(f"train_fast: {len(text):,} characters, vocab {VOCAB_SIZE} ...", file=sys.stderr)
    start = time.perf_counter()
    train_fast(text, VOCAB_SIZE)
    train_seconds = time.perf_counter() - start

    prefix = text[:SIMPLE_PREFIX_CHARS]
    print(f"train_simple vs train_fast on the first {len(prefix):,} characters ...",
          file=sys.stderr)
    simple = list(train_simple(prefix, VOCAB_SIZE).items())
    fast = list(train_fast(prefix, VOCAB_SIZE).items())

    print(json.dumps({
        "train_seconds": round(train_seconds, 3),
        "vocab_size": VOCAB_SIZE,
        "same_merges_as_simple": simple == fast,
        "simple_prefix_chars": len(prefix),
        "threads": _threads(),
        "python": platform.python_version(),
        "corpus_sha256": corpus_sha256(),
    }))
    return 0
