"""`python -m llmlab.bench prompting [--sentiment FILE] [--endpoint] [--quick]`: how well each
way of asking the local chat model (SmolLM2-135M-Instruct) labels review sentiment. Prints one
JSON line:

    {"data", "n", "accuracy": {METHOD: …}, "seconds": {METHOD: …}, "k", "k_shot_orders": […],
     "fine_tune": {"train_seconds", "from_cache", "cache", "steps"}, "threads", "torch"}

Methods (`llmlab.prompting`), all on the same zero-shot instruction:
- `zero_shot_reply`: the greedy reply starts with the right label;
- `label_scoring`: the likelier label word as the reply's first word;
- `calibrated`: label scoring minus the log-probabilities on content-free inputs;
- `k_shot`, `k_shot_calibrated`: k balanced examples from the development half as prior chat
  turns, label scoring (plain / calibrated); the mean over `ORDERS` orders of the same examples
  (`k_shot_orders` lists each order's accuracy);
- `selected_examples`: the k development examples most similar by TF-IDF, label scoring;
- `fine_tuned`: label scoring after a LoRA fine-tune on the development half (cached under
  `.cache/prompting/`; the first run trains).

Everything is measured on the test half of the course's sentiment set, or on FILE (a JSON list
of {"text", "label": "positive" | "negative"}; the examples and the fine-tune still come from the
course's development half). `--quick` scores 4 items with a 2-step fine-tune on 4 items (with
`--endpoint`: 4 items and the first 2 attacks), only to check that the benchmark runs.

`--endpoint` asks the model at the OpenAI-compatible endpoint that `LLMLAB_LLM_BASE_URL`,
`LLMLAB_LLM_API_KEY` and `LLMLAB_LLM_MODEL` name (a larger model at a provider, or the course's
own behind `python -m llmlab.serve`) the same prompts, through `llmlab.llm.LLM`. An endpoint
returns text, not the log-probabilities of chosen continuations, so only the methods read from
the reply run: `zero_shot_reply`, `k_shot_reply` (the same k examples and orders as `k_shot`)
and `selected_examples_reply`; and the prompt-injection attacks of `llmlab.prompting`, whose
success rate per defence is reported as `injection` (each reply's first `INJECTION_WINDOW`
tokens read for the canary, as in lecture 10, so the rates compare with the lecture's). The line
then also holds `"llm": {"backend", "model"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import torch

K = 4
ORDERS = 5
QUICK_ATTACKS = 2  # each one is a reply of up to INJECTION_WINDOW tokens per defence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench prompting",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sentiment", metavar="FILE",
                        help="a JSON list of {text, label} to score instead of the test half")
    parser.add_argument("--endpoint", action="store_true",
                        help="ask the endpoint LLMLAB_LLM_BASE_URL names (reply-based methods "
                             "and the injection attacks) instead of the local model")
    parser.add_argument("--quick", action="store_true", help="a smoke test on 4 items")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from llmlab import prompting as P
    from llmlab.chat import ChatModel

    dev, test = P.split_dev_test(P.load_labelled("sentiment"))
    try:
        items = P.load_labelled(args.sentiment) if args.sentiment else test
    except (OSError, ValueError) as exc:  # a missing or malformed file: say so, no traceback
        parser.error(f"--sentiment {args.sentiment}: {exc}")
    bad = sorted({i["label"] for i in items} - set(P.SENTIMENT_LABELS))
    if bad:
        parser.error(f"labels must be positive or negative, found {', '.join(bad)}")
    config = P.FineTuneConfig(threads=args.threads)
    orders, train = ORDERS, dev
    if args.quick:
        items, orders, train = items[:2] + items[-2:], 2, dev[:4]
        config = P.FineTuneConfig(steps=2, batch_size=2, last_blocks=1, threads=args.threads)
    labels = P.SENTIMENT_LABELS
    examples = P.choose_examples(dev, K, seed=0)
    if args.endpoint:
        return _endpoint(parser, args, items, dev, examples, orders)
    model = ChatModel.load()

    accuracy, seconds = {}, {}

    def measure(name, predict):
        started = time.perf_counter()
        predictions = predict()
        seconds[name] = round(time.perf_counter() - started, 2)
        accuracy[name] = round(P.accuracy(predictions, items), 4)
        print(f"{name}: {accuracy[name]:.3f} ({seconds[name]} s)", file=sys.stderr)

    measure("zero_shot_reply", lambda: P.predict_by_reply(model, items, labels))
    measure("label_scoring", lambda: P.predict_by_scoring(model, items, labels))
    measure("calibrated", lambda: P.predict_calibrated(model, items, labels))
    shuffled = [random.Random(seed).sample(examples, len(examples)) for seed in range(orders)]
    per_order = {}
    for name, predict in (("k_shot", P.predict_by_scoring),
                          ("k_shot_calibrated", P.predict_calibrated)):
        started = time.perf_counter()
        per_order[name] = [P.accuracy(predict(model, items, labels, order), items)
                           for order in shuffled]
        seconds[name] = round((time.perf_counter() - started) / orders, 2)
        accuracy[name] = round(sum(per_order[name]) / orders, 4)
        print(f"{name}: {accuracy[name]:.3f} over {orders} orders", file=sys.stderr)
    measure("selected_examples",
            lambda: P.predict_with_selected_examples(model, items, labels, dev, K))
    started = time.perf_counter()
    tuned = P.fine_tune_classifier(train, labels, config, progress=False)
    fine_tune_wall = round(time.perf_counter() - started, 2)
    measure("fine_tuned", lambda: P.predict_by_scoring(tuned.model, items, labels))

    print(json.dumps({
        "data": args.sentiment or "sentiment test half", "n": len(items),
        "accuracy": accuracy, "seconds": seconds, "k": K,
        "k_shot_orders": [round(a, 4) for a in per_order["k_shot"]],
        "k_shot_calibrated_orders": [round(a, 4) for a in per_order["k_shot_calibrated"]],
        "fine_tune": {"train_seconds": round(tuned.train_seconds, 2), "wall_seconds":
                      fine_tune_wall, "from_cache": tuned.from_cache,
                      "cache": str(tuned.cache_path), "steps": config.steps,
                      "train_items": len(train)},
        "threads": torch.get_num_threads(), "torch": torch.__version__}))
    return 0


def _endpoint(parser, args, items, dev, examples, orders) -> int:
    """`--endpoint`: the reply-based methods and the injection attacks, through `LLM()`."""
    from llmlab import prompting as P
    from llmlab.llm import BASE_URL_VAR, LLM

    if not os.environ.get(BASE_URL_VAR):
        parser.error(f"--endpoint needs {BASE_URL_VAR} (and LLMLAB_LLM_API_KEY, "
                     "LLMLAB_LLM_MODEL if the endpoint wants them)")
    try:
        llm = LLM("openai")
    except Exception as exc:  # noqa: BLE001  (any failure to reach the endpoint: say which)
        parser.error(f"cannot use the endpoint at {os.environ[BASE_URL_VAR]}: {exc}")
    labels = P.SENTIMENT_LABELS
    accuracy, seconds = {}, {}

    def timed(name, run):
        started = time.perf_counter()
        value = run()
        seconds[name] = round(time.perf_counter() - started, 2)
        return value

    accuracy["zero_shot_reply"] = round(P.accuracy(timed(
        "zero_shot_reply", lambda: P.predict_by_reply(llm, items, labels)), items), 4)
    shuffled = [random.Random(seed).sample(examples, len(examples)) for seed in range(orders)]
    per_order = timed("k_shot_reply", lambda: [
        P.accuracy(P.predict_by_reply(llm, items, labels, order), items) for order in shuffled])
    seconds["k_shot_reply"] = round(seconds["k_shot_reply"] / orders, 2)
    accuracy["k_shot_reply"] = round(sum(per_order) / orders, 4)
    def selected(item):  # its K most similar development reviews, the most similar last
        return P.predict_by_reply(llm, [item], labels,
                                  P.select_examples(item["text"], dev, K)[::-1])[0]

    accuracy["selected_examples_reply"] = round(P.accuracy(timed(
        "selected_examples_reply", lambda: [selected(item) for item in items]), items), 4)
    for name, value in accuracy.items():
        print(f"{name}: {value:.3f} ({seconds[name]} s)", file=sys.stderr)
    attacks = P.load_attacks()[: QUICK_ATTACKS if args.quick else None]
    injection = {defence: round(timed(f"injection {defence}", lambda d=defence:
                                      P.attack_success_rate(llm, attacks, d)), 4)
                 for defence in P.DEFENCES}
    print(json.dumps({
        "data": args.sentiment or "sentiment test half", "n": len(items),
        "llm": {"backend": llm.backend, "model": llm.model},
        "accuracy": accuracy, "seconds": seconds, "k": K,
        "k_shot_reply_orders": [round(a, 4) for a in per_order],
        "injection": injection, "attacks": len(attacks),
        "injection_window_tokens": P.INJECTION_WINDOW}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
