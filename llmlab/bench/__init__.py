"""Benchmarks: `python -m llmlab.bench bpe` and `python -m llmlab.bench gpt`.

Each prints one JSON line on stdout (progress goes to stderr). They measure; they never assert:
compare the figures with the targets in the issue and report them in the session notes.
"""
