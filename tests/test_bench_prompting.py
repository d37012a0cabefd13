"""`python -m llmlab.bench prompting --quick`: the benchmark runs and prints its JSON line."""

import json
import subprocess
import sys

from llmlab import PROJECT_ROOT

METHODS = {"zero_shot_reply", "label_scoring", "calibrated", "k_shot", "k_shot_calibrated",
           "selected_examples", "fine_tuned"}


def test_quick_benchmark_prints_one_json_line_with_every_method(tmp_path):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps([{"text": "Great kettle, boils fast.", "label": "positive"},
                                {"text": "It broke after a day.", "label": "negative"}] * 2))
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "prompting", "--quick",
                           "--threads", "2", "--sentiment", str(data)],
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    report = json.loads(lines[0])
    assert report["n"] == 4 and report["data"] == str(data)
    assert set(report["accuracy"]) == set(report["seconds"]) == METHODS
    assert all(0 <= a <= 1 for a in report["accuracy"].values())
    assert len(report["k_shot_orders"]) == 2 and report["fine_tune"]["steps"] == 2
    assert report["threads"] == 2


def test_a_bad_sentiment_file_gets_a_usage_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "not a list"}')
    for path in (bad, tmp_path / "missing.json"):
        proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "prompting", "--quick",
                               "--sentiment", str(path)],
                              capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
        assert proc.returncode == 2 and f"--sentiment {path}" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not proc.stdout
