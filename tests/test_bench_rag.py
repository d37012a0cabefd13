"""`python -m llmlab.bench rag --quick`: the benchmark runs and prints its JSON line."""

import json
import subprocess
import sys

from llmlab import PROJECT_ROOT

RETRIEVERS = {"tfidf", "bm25", "bm25_search_tokens", "dense_flat", "dense_hnsw", "hybrid",
              "hybrid_reranked"}
BUILDS = {"tfidf", "bm25", "bm25_search_tokens", "encoder_load", "embed_empty_cache",
          "embed_cached", "faiss_flat", "faiss_hnsw", "reranker_model_load"}


def test_quick_benchmark_prints_one_json_line_with_every_retriever(tmp_path):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps([
        {"q": "What does the assert statement do when its expression is false?",
         "topics": ["assert"]},
        {"q": "How do I leave a loop early?", "topics": ["break"]},
        {"q": "Which statement makes a name refer to a module-level variable?",
         "topics": ["global"]},
        {"q": "How is a with statement's context manager entered and exited?",
         "topics": ["with", "context-managers"]},
        {"q": "not asked in quick mode", "topics": ["pass"]}]))
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "rag", "--quick",
                           "--threads", "1", "--questions", str(data)],
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    report = json.loads(lines[0])
    assert report["n"] == 4 and report["data"] == str(data) and report["quick"]
    assert set(report["retrievers"]) == RETRIEVERS and set(report["build_seconds"]) == BUILDS
    for scores in report["retrievers"].values():
        assert 0 <= scores["recall@1"] <= scores["recall@5"] <= 1
        assert scores["recall@1"] <= scores["mrr@10"] <= 1
        assert scores["ms_per_query"] > 0
    assert report["retrievers"]["bm25"]["recall@5"] >= 0.75, "easy questions, a small corpus"
    assert report["build_seconds"]["embed_cached"] < report["build_seconds"]["embed_empty_cache"]
    assert len(report["corpus_sha256"]) == 64 and report["threads"] == 1
    assert report["chunking"]["chunks"] > 0
    assert report["rerank"]["n"] == 4
