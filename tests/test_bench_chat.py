"""`python -m llmlab.bench chat --quick`: the benchmark runs and prints its JSON line."""

import json
import subprocess
import sys

from llmlab import PROJECT_ROOT

CASE_KEYS = {"load_s", "prefill_tok_s", "decode_tok_s", "peak_rss_mb", "ceiling_tok_s"}


def test_quick_benchmark_prints_one_json_line_with_every_field():
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "chat", "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    report = json.loads(lines[0])
    assert set(report) == {"llmlab", "transformers", "default_dtype", "default_vs_float32",
                           "targets", "bandwidth_gb_s", "threads", "torch"}
    default = report["default_dtype"]
    # --quick runs llmlab's default case and transformers' float32, what the targets compare
    for impl, case_name in (("llmlab", default), ("transformers", "float32")):
        case = report[impl][case_name]
        assert set(case) == CASE_KEYS
        assert all(isinstance(v, int | float) and v > 0 for v in case.values()), case
    assert report["targets"]["default_decode_vs_transformers_float32"] > 0
    assert 0 < report["targets"]["default_decode_of_ceiling"]
    assert all(v > 0 for v in report["bandwidth_gb_s"].values()) and report["threads"] == 2
