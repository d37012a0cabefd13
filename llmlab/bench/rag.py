"""`python -m llmlab.bench rag [--questions FILE] [--quick]`: how well each retriever of
`llmlab.rag` finds the reference-manual topics that answer the course's questions, and what the
indexes cost. Prints one JSON line:

    {"data", "n", "chunking", "retrievers": {NAME: {"recall@1", "recall@5", "mrr@10",
     "ms_per_query"}}, "build_seconds": {...}, "hnsw", "corpus_sha256", "python", "threads", ...}

Retrievers, all over the same chunks (`llmlab.rag.DEFAULT_CHUNKING`, chosen on the development
half): `tfidf`, `bm25` (on `llmlab.rag.tokenize`), `bm25_search_tokens` (on
`llmlab.rag.search_tokens`: operators kept, plurals off), `dense_flat` (all-MiniLM-L6-v2 in
`llmlab.bert`, exact FAISS search), `dense_hnsw` (approximate FAISS search) and `hybrid`
(`llmlab.rag.best_retriever`: reciprocal rank fusion of `bm25_search_tokens` and `dense_flat`),
and `hybrid_reranked`: `hybrid`'s best topics reranked by the local language model
(`llmlab.rag.QueryLikelihoodReranker`, `RERANK_SETTINGS`; its query time is mostly the model's,
about 3 s a question on 2 cores). `--quick` reranks 4 topics instead of 20.

`build_seconds`: BM25's and TF-IDF's index; the encoder's load; the chunk embeddings from an
empty cache (a fresh temporary folder, so every run measures it) and again from that cache; the
FAISS flat and HNSW index builds. Query latency is the mean over the questions, the query's
embedding included.

Measured on the test half of the course's question set, or on FILE (a JSON list of
{"q", "topics"}). `--quick` runs 4 questions over a small part of the corpus, only to show that
the benchmark works.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

QUICK_QUESTIONS = 4
QUICK_EXTRA_TOPICS = 3
QUICK_RERANK = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench rag",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--questions", metavar="FILE",
                        help="a JSON list of {q, topics} to measure instead of the test half")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 4 questions over a small part of the corpus")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import faiss
    import sklearn.feature_extraction.text  # noqa: F401  (imported here: not part of a build time)

    from llmlab import rag
    from llmlab.bert import SentenceEncoder
    from llmlab.text import corpus_sha256, reference_topics

    try:
        items = rag.questions(path=args.questions) if args.questions else rag.questions("test")
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    topics = None
    if args.quick:
        items = items[:QUICK_QUESTIONS]
        gold = {t for item in items for t in item["topics"]}
        topics = sorted(gold | set(list(reference_topics())[:QUICK_EXTRA_TOPICS]))
    chunks = rag.chunk_corpus(topics, **rag.DEFAULT_CHUNKING)
    build: dict[str, float] = {}

    def timed(name, make):
        started = time.perf_counter()
        value = make()
        build[name] = round(time.perf_counter() - started, 4)
        return value

    tfidf = timed("tfidf", lambda: rag.TfidfRetriever(chunks))
    bm25 = timed("bm25", lambda: rag.BM25Retriever(chunks))
    bm25_search = timed("bm25_search_tokens",
                        lambda: rag.BM25Retriever(chunks, tokenizer=rag.search_tokens))
    encoder = timed("encoder_load", SentenceEncoder.load)
    with tempfile.TemporaryDirectory(prefix="llmlab-bench-rag-") as folder:
        cache = Path(folder)
        cold = rag.embed_chunks(encoder, chunks, cache=cache, progress=False)
        warm = rag.embed_chunks(encoder, chunks, cache=cache)
        assert warm.from_cache and not cold.from_cache
        build["embed_empty_cache"] = round(cold.seconds, 3)
        build["embed_cached"] = round(warm.seconds, 4)
        flat = rag.DenseRetriever(encoder, chunks, "flat", cache=cache)
        hnsw = rag.DenseRetriever(encoder, chunks, "hnsw", cache=cache, **rag.HNSW_SETTINGS)
    build["faiss_flat"] = round(flat.build_seconds, 5)
    build["faiss_hnsw"] = round(hnsw.build_seconds, 5)
    hybrid = rag.best_retriever(chunks, bm25=bm25_search, dense=flat)
    rerank = {**rag.RERANK_SETTINGS, "n": QUICK_RERANK if args.quick else rag.RERANK_SETTINGS["n"]}
    reranked = timed("reranker_model_load",
                     lambda: rag.QueryLikelihoodReranker(hybrid, chunks, **rerank))

    results = {}
    for name, retriever in (("tfidf", tfidf), ("bm25", bm25), ("bm25_search_tokens", bm25_search),
                            ("dense_flat", flat), ("dense_hnsw", hnsw), ("hybrid", hybrid),
                            ("hybrid_reranked", reranked)):
        scores = rag.evaluate(retriever, items, chunks, ks=(1, 5), mrr_k=10)
        results[name] = {key: round(scores[key], 4)
                         for key in ("recall@1", "recall@5", "mrr@10", "ms_per_query")}
        print(f"{name}: {results[name]}", file=sys.stderr)

    print(json.dumps({
        "data": args.questions or "rag_questions test half", "n": len(items),
        "quick": args.quick,
        "chunking": {**rag.DEFAULT_CHUNKING, "chunks": len(chunks),
                     "topics": len({c.topic for c in chunks})},
        "retrievers": results, "build_seconds": build,
        "hybrid": rag.BEST_FUSION, "rerank": rerank, "hnsw": rag.HNSW_SETTINGS,
        "corpus_sha256": corpus_sha256(), "python": platform.python_version(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "faiss": faiss.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
