"""`python -m llmlab.bench {bpe,gpt,chat,prompting,rag,agents}`: run one benchmark, print its
JSON line."""

import argparse
import importlib
import sys

BENCHMARKS = {
    "bpe": "llmlab.bench.bpe",  # BPE training speed, and the same merges as the simple trainer
    "gpt": "llmlab.bench.gpt",  # the lecture's GPT configuration against the reference recipe
    "chat": "llmlab.bench.chat",  # llmlab's SmolLM2 against transformers: load, prefill, decode
    "prompting": "llmlab.bench.prompting",  # sentiment accuracy of each prompting method
    "rag": "llmlab.bench.rag",  # recall@k and MRR of each retriever, index build and query time
    "agents": "llmlab.bench.agents",  # tool choice, valid calls and task success, +- constrained
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in BENCHMARKS:  # the benchmark's own options, --help included
        return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench", description=__doc__)
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.parse_args(argv)  # prints the help, or says which benchmarks there are
    return 2


if __name__ == "__main__":
    sys.exit(main())
