"""Benchmarks: `python -m llmlab.bench NAME` with NAME one of `bpe`, `gpt`, `chat`, `prompting`,
`rag` and `agents` (one module each here; `python -m llmlab.bench NAME --help` gives its options).

Each prints one JSON line on stdout (progress goes to stderr). They measure; they never assert.
What each measures, and its targets where it has them, is in its module's docstring and in the
README's list of benchmarks. The first two, on 2 CPU cores:

- `bpe`: training the byte-level BPE tokenizer to a 1024-token vocabulary takes at most 9 s;
- `gpt`: lecture 08's recipe reaches the reference recipe's final validation loss in at most 90 s
  of training and in at most 0.6 times the reference's training time.
"""
