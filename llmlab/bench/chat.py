"""`python -m llmlab.bench chat`: llmlab's SmolLM2 against transformers' `generate`, same weights.

Runs every (implementation, dtype) case in its own subprocess, so that load time and peak memory
are each case's own, and prints one JSON line:

    {"llmlab": {CASE: {"load_s", "prefill_tok_s", "decode_tok_s", "peak_rss_mb",
                       "ceiling_tok_s"}},
     "transformers": {DTYPE: {same keys}},
     "default_dtype", "default_vs_float32": {"max_logit_diff", "greedy_agreement"},
     "targets": {"default_decode_vs_transformers_float32", "default_decode_of_ceiling",
                 "like_for_like": {DTYPE: {"prefill_tok_s", "decode_tok_s"}: bool}},
     "bandwidth_gb_s": {DTYPE: …}, "threads", "torch"}

- prefill: a forward pass over a 512-token prompt (text of the Python reference manual), after
  a warm-up pass, computing the logits of the last position only (both implementations, as
  generation does); tokens per second of the fastest of PREFILL_REPEATS passes (one pass takes
  about a second, which the machine's other work can stretch by 10-20 %).
- decode: greedy tokens per second over exactly 128 new tokens, end-of-text ignored, the
  fastest of DECODE_REPEATS runs (a run takes 1-9 s; on a shared machine, one run in four came
  out 20-35 % slow). For transformers, `generate(max_new_tokens=128)` minus
  `generate(max_new_tokens=1)` on the same prompt (so both include one prefill, and the
  difference is 127 decoding steps); for llmlab, the same greedy loop over its KV cache, after
  two warm-up decoding steps on another cache (the first call of its compiled decoding loop,
  `llmlab.llama.decode_blocks`, takes about 30 ms more than the others, as transformers' first
  step does in `generate(max_new_tokens=1)`).
- ceiling: decoding a token reads every weight matrix once (all layers' attention and
  feed-forward matrices and the output head), so tokens/s cannot exceed bandwidth / those bytes.
  `bandwidth_gb_s` is the read rate of torch's matrix–vector product on a 8192 x 8192 matrix in
  that dtype (far larger than the CPU's caches); "int4" is the read rate of torch's int4 kernel
  (packed codes + scales) on such a matrix. In the `+int4` cases the layers that decode from
  4-bit codes count their packed bytes at the int4 rate, the rest at their dtype's. Each case
  measures its ceiling twice, after loading and after decoding, and reports the higher: other
  programs on the machine can only lower a measured read rate.
- cases: float32, bfloat16 and float16 with dense weights for both implementations (like for
  like), and llmlab's `float32+int4` and `bfloat16+int4` (decoding from the file's 4-bit codes:
  `llmlab.llama.Linear`), which transformers has no counterpart of. The default is
  `ChatModel.load()`'s: `DEFAULT_DTYPE` (bfloat16 on a CPU with bfloat16 matrix instructions,
  float32 elsewhere: `llmlab.fast_dtype`) with 4-bit decoding.
- default_vs_float32: for llmlab's default dtype, the largest difference of the prompt's
  next-token logits from float32's, and the fraction of the 128 greedy tokens that agree with
  float32's before the first disagreement.

`--quick` runs one dtype with a short prompt and 8 new tokens, to check that the benchmark works.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: llmlab's cases: the three dtypes (dense weights, like for like with transformers) and
#: float32 and bfloat16 decoding from the file's 4-bit codes (`llmlab.llama.Linear`), which
#: transformers has no counterpart of (its GGUF loader dequantizes every tensor).
INT4_CASES = {"float32+int4": torch.float32, "bfloat16+int4": torch.bfloat16}
LLMLAB_CASES = {**{name: (dtype, False) for name, dtype in DTYPES.items()},
                **{name: (dtype, True) for name, dtype in INT4_CASES.items()}}
IMPLEMENTATIONS = ("llmlab", "transformers")


def prompt_ids(tokenizer_encode, n_tokens: int) -> list[int]:
    from llmlab.text import reference_text

    ids = tokenizer_encode(reference_text()[:20 * n_tokens])
    if len(ids) < n_tokens:
        raise RuntimeError("the reference text is too short for the prompt")
    return ids[:n_tokens]


def weight_bytes_per_token(model: torch.nn.Module, element_size: int) -> dict[str, int]:
    """Bytes of every weight matrix a decoding step reads, by format: 2-D weights of the linear
    layers (the output head included, once even when it is tied to the embedding), as "dense"
    bytes, or as "int4" bytes (packed codes + scales and zeros) for a layer that decodes from
    4-bit codes."""
    seen, total = set(), {"dense": 0, "int4": 0}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            parts = getattr(module, "int4", [])
            if parts:
                total["int4"] += sum(t.numel() * t.element_size() for part in parts for t in part)
            else:
                total["dense"] += module.weight.numel() * element_size
    return total


def bandwidth(dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    """GB/s that torch's matrix-vector product reads a size x size matrix at."""
    matrix = torch.randn(size, size).to(dtype)
    vector = torch.randn(size).to(dtype)
    torch.mv(matrix, vector)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mv(matrix, vector)
        best = min(best, time.perf_counter() - started)
    return matrix.numel() * matrix.element_size() / best / 1e9


def int4_bandwidth(size: int = 8192, repeats: int = 20) -> float:
    """GB/s that torch's int4 kernel reads a size x size matrix of 4-bit codes (with a bfloat16
    scale and zero per block of 32) at, multiplying one bfloat16 row by it."""
    from llmlab.llama import Linear

    layer = Linear(size, size)
    codes = torch.randint(0, 16, (size, size), dtype=torch.uint8)
    scales = torch.rand(size, size // 32) / 100
    layer.add_int4(codes, scales, -8 * scales)
    x = torch.randn(1, 1, size, dtype=torch.bfloat16)
    layer(x)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        layer(x)
        best = min(best, time.perf_counter() - started)
    nbytes = sum(t.numel() * t.element_size() for part in layer.int4 for t in part)
    return nbytes / best / 1e9


def ceiling_tok_s(model: torch.nn.Module, dtype: torch.dtype) -> float:
    """The memory-bound limit: one token takes (dense bytes / dense bandwidth) + (int4 bytes /
    int4 bandwidth) seconds."""
    nbytes = weight_bytes_per_token(model, torch.tensor([], dtype=dtype).element_size())
    seconds = nbytes["dense"] / (bandwidth(dtype) * 1e9)
    if nbytes["int4"]:
        seconds += nbytes["int4"] / (int4_bandwidth() * 1e9)
    return 1 / seconds


PREFILL_REPEATS = 3
DECODE_REPEATS = 3


def run_case(impl: str, case: str, n_prompt: int, n_new: int, out: Path) -> dict:
    dtype, int4_decode = LLMLAB_CASES[case]
    started = time.perf_counter()
    if impl == "llmlab":
        from llmlab.chat import ChatModel

        bot = ChatModel.load(dtype, int4_decode=int4_decode)
        model = bot.model
        load_s = time.perf_counter() - started
        ceiling_before = ceiling_tok_s(model, dtype)
        ids = prompt_ids(lambda t: bot.tokenizer.encode(t, allowed_special="none"), n_prompt)
        x = torch.tensor([ids])
        warm = model.new_cache(max_len=64)
        model(x[:, :32], warm)  # warm-up: a prompt, then two decoding steps
        for position in (32, 33):
            model(x[:, position:position + 1], warm, position)
        cache = model.new_cache(max_len=n_prompt + n_new)
        prefill_s = float("inf")
        for _ in range(PREFILL_REPEATS):  # each pass rewrites the same cache positions
            started = time.perf_counter()
            logits = model(x, cache, last_only=True)[0, -1]
            prefill_s = min(prefill_s, time.perf_counter() - started)
        first = logits.clone()
        decode_s = float("inf")
        for _ in range(DECODE_REPEATS):  # each run decodes the same tokens into the same slots
            logits, tokens, started = first, [], time.perf_counter()
            for position in range(n_prompt, n_prompt + n_new):
                nxt = int(logits.argmax())
                tokens.append(nxt)
                logits = model(torch.tensor([[nxt]]), cache, position)[0, -1]
            decode_s = min(decode_s, time.perf_counter() - started)
        decode_tok_s = n_new / decode_s
    else:
        import transformers

        from llmlab.llama import model_path

        path = model_path()
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype).eval()
        load_s = time.perf_counter() - started
        ceiling_before = ceiling_tok_s(model, dtype)
        ids = prompt_ids(tok.encode, n_prompt)
        x = torch.tensor([ids])
        with torch.no_grad():
            model(x[:, :32])  # warm-up
            prefill_s = float("inf")
            for _ in range(PREFILL_REPEATS):
                started = time.perf_counter()
                first = model(x, logits_to_keep=1).logits[0, -1].float()  # as llmlab
                prefill_s = min(prefill_s, time.perf_counter() - started)

            def generate(n: int) -> tuple[list[int], float]:
                t0 = time.perf_counter()
                seq = model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
                return seq[0, len(ids):].tolist(), time.perf_counter() - t0

            decode_tok_s = 0.0
            for _ in range(DECODE_REPEATS):
                _, one = generate(1)
                tokens, full = generate(n_new)
                decode_tok_s = max(decode_tok_s, (n_new - 1) / (full - one))
    # the best of two measurements, one before the prompt and one after decoding: a limit is
    # measured best when nothing else on the machine competes for its memory bus
    ceiling = max(ceiling_before, ceiling_tok_s(model, dtype))
    torch.save({"logits": first.float(), "tokens": tokens}, out)
    return {"load_s": round(load_s, 2), "prefill_tok_s": round(n_prompt / prefill_s, 1),
            "decode_tok_s": round(decode_tok_s, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "ceiling_tok_s": round(ceiling, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench chat",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # IMPL:DTYPE:OUT, one subprocess
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_prompt, n_new = (64, 8) if args.quick else (512, 128)
    if args.case:
        impl, dtype_name, out = args.case.split(":", 2)
        print(json.dumps(run_case(impl, dtype_name, n_prompt, n_new, Path(out))))
        return 0

    from llmlab.chat import DEFAULT_DTYPE, INT4_DECODE

    default = next(name for name, case in LLMLAB_CASES.items()
                   if case == (DEFAULT_DTYPE, INT4_DECODE))
    # --quick: llmlab's default against transformers' float32 (what the targets compare)
    runs = ([("llmlab", default), ("transformers", "float32")] if args.quick else
            [(impl, case) for case in LLMLAB_CASES for impl in IMPLEMENTATIONS
             if impl == "llmlab" or case in DTYPES])
    dtypes = sorted({case for _, case in runs}, key=list(LLMLAB_CASES).index)
    report: dict = {impl: {} for impl in IMPLEMENTATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for impl, dtype_name in runs:
            out = Path(tmp) / f"{impl}-{dtype_name}.pt"
            cmd = [sys.executable, "-m", "llmlab.bench", "chat", "--threads",
                   str(args.threads), "--case", f"{impl}:{dtype_name}:{out}"]
            if args.quick:
                cmd.append("--quick")
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise RuntimeError(f"the {impl} {dtype_name} case failed")
            report[impl][dtype_name] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{impl} {dtype_name}: {report[impl][dtype_name]}", file=sys.stderr,
                  flush=True)
        comparison = None
        if "float32" in report["llmlab"]:
            ref = torch.load(Path(tmp) / "llmlab-float32.pt")
            got = torch.load(Path(tmp) / f"llmlab-{default}.pt")
            agree = 0
            for a, b in zip(ref["tokens"], got["tokens"], strict=True):
                if a != b:
                    break
                agree += 1
            comparison = {"max_logit_diff": round(float((ref["logits"] - got["logits"])
                                                        .abs().max()), 4),
                          "greedy_agreement": round(agree / n_new, 3)}
    ours, theirs = report["llmlab"], report["transformers"]
    targets = {
        "default_decode_vs_transformers_float32": round(
            ours[default]["decode_tok_s"] / theirs["float32"]["decode_tok_s"], 2),
        "default_decode_of_ceiling": round(
            ours[default]["decode_tok_s"] / ours[default]["ceiling_tok_s"], 2),
        "like_for_like": {name: {key: ours[name][key] >= theirs[name][key]
                                 for key in ("prefill_tok_s", "decode_tok_s")}
                          for name in DTYPES if name in ours and name in theirs},
    }
    report.update({
        "default_dtype": default, "default_vs_float32": comparison, "targets": targets,
        "bandwidth_gb_s": {**{name: round(bandwidth(DTYPES[name]), 1)
                              for name in DTYPES if name in dtypes},
                           **({"int4": round(int4_bandwidth(), 1)}
                              if set(INT4_CASES) & set(dtypes) else {})},
        "threads": args.threads, "torch": torch.__version__,
    })
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
