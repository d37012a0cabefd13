"""Benchmarks: `python -m llmlab.bench bpe` and `python -m llmlab.bench gpt`.

Each prints one JSON line on stdout (progress goes to stderr). They measure; they never assert.
The targets, on 2 CPU cores:

- `bpe`: training the byte-level BPE tokenizer to a 1024-token vocabulary takes at most 9 s;
- `gpt`: lecture 08's recipe reaches the reference recipe's final validation loss in at most 90 s
  of training and in at most 0.6 times the reference's training time.
"""
