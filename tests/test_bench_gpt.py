"""`python -m llmlab.bench gpt --quick`: the benchmark runs and prints its JSON line."""

import json
import subprocess
import sys

from llmlab import PROJECT_ROOT


def test_quick_benchmark_prints_one_json_line_with_every_field():
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "gpt", "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    report = json.loads(lines[0])
    assert set(report) == {"lecture", "reference", "ratio", "threads", "python", "corpus_sha256"}
    lecture, reference = report["lecture"], report["reference"]
    assert set(lecture) == {"seconds_to_ref_loss", "best_val_loss", "train_seconds", "params"}
    assert set(reference) == {"final_val_loss", "train_seconds", "params"}
    for value in (lecture["best_val_loss"], lecture["train_seconds"],
                  reference["final_val_loss"], reference["train_seconds"]):
        assert isinstance(value, float) and value > 0
    assert isinstance(lecture["params"], int) and isinstance(reference["params"], int)
    assert lecture["params"] > 0 and reference["params"] > 0
    if lecture["seconds_to_ref_loss"] is None:
        assert report["ratio"] is None
    else:
        assert isinstance(report["ratio"], float)
        assert 0 < lecture["seconds_to_ref_loss"] <= lecture["train_seconds"]
    assert report["threads"] == 2, "both cores by default"
    assert isinstance(report["python"], str) and len(report["corpus_sha256"]) == 64
