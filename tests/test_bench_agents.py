"""`python -m llmlab.bench agents --quick`: the benchmark runs the real local model on a tiny
task file and prints its JSON line (a smoke test: the figures themselves are not asserted)."""

import json
import subprocess
import sys

from llmlab import PROJECT_ROOT

RATES = {"tool_choice_accuracy", "valid_call_rate", "exact_call_rate", "task_success",
         "mean_steps"}


def test_quick_benchmark_prints_one_json_line_with_both_columns(tmp_path):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps([
        {"task": "What is 12 * 12?", "answer": "144", "kind": "arithmetic",
         "tool": "calculator", "arguments": {"expression": "12 * 12"}},
        {"task": "What day of the week is 2026-12-25?", "answer": "Friday"},
        {"task": "not run in quick mode", "answer": "1"}]))
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "agents", "--quick",
                           "--threads", "1", "--tasks", str(data)],
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    report = json.loads(lines[0])
    assert report["n_tasks"] == 2 and report["data"] == str(data) and report["quick"]
    assert report["threads"] == 1 and report["max_steps"] == 2
    free = report["unconstrained"]
    assert RATES <= set(free) and free["n_with_calls"] == 1
    for key in RATES - {"mean_steps"}:
        assert 0 <= free[key] <= 1
    assert 1 <= free["mean_steps"] <= 2 and sum(free["stopped"].values()) == 2
    assert set(free["by_kind"]) == {"arithmetic", "other"}
    constrained = report["constrained"]
    assert "error" in constrained or RATES <= set(constrained), constrained
