"""llmlab.rag: chunking, BM25 against the independent `bm25s` package, cosine top-k and FAISS
against brute force, rank fusion and the metrics on hand examples, the prompt's format, the
embedding cache. Dense parts run on a small fake encoder, so nothing here loads a model."""

import json
import re

import numpy as np
import pytest

from llmlab import rag
from llmlab.rag import (
    BM25,
    Chunk,
    build_messages,
    chunk_corpus,
    chunk_text,
    cited_numbers,
    cosine_top_k,
    mean_reciprocal_rank,
    rank_topics,
    recall_at_k,
    reciprocal_rank_fusion,
    tokenize,
)
from llmlab.text import reference_topics


class HashingEncoder:
    """A stand-in for `llmlab.bert.SentenceEncoder`: bag of hashed words, L2-normalised."""

    dim = 64
    name = "hashing-test-encoder"

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=32, progress=False):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                digest = sum(ord(c) * 31 ** i for i, c in enumerate(token[:8]))
                out[row, digest % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


SLICE = ("assert", "break", "continue", "del", "for", "global", "pass", "return", "while", "with",
         "try", "lambda", "import")


@pytest.fixture(scope="module")
def chunks():
    return chunk_corpus(SLICE, size=300, overlap=60)


# -- chunking ----------------------------------------------------------------------------------
@pytest.mark.parametrize("length, size, overlap", [(0, 10, 2), (1, 10, 2), (10, 10, 2),
                                                   (11, 10, 2), (100, 10, 0), (97, 10, 9),
                                                   (1234, 200, 50), (57, 7, 3)])
def test_chunk_text_windows_cover_overlap_and_stop_at_the_end(length, size, overlap):
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    pieces = chunk_text(text, size, overlap)
    step = size - overlap
    if length == 0:
        assert pieces == []
        return
    starts = [i * step for i in range(len(pieces))]
    assert all(p == text[s : s + size] for p, s in zip(pieces, starts, strict=True))
    assert starts[-1] + len(pieces[-1]) == length, "the last window ends at the end"
    assert all(len(p) == size for p in pieces[:-1])
    assert len(pieces) == 1 or starts[-1] + size >= length > starts[-2] + size, \
        "stop once a window reaches the end; none lies inside the previous one"
    # coverage: every character is in some window; consecutive windows share `overlap` chars
    assert "".join(p[: step] for p in pieces[:-1]) + pieces[-1] == text
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a[step:] == b[: len(a) - step]


@pytest.mark.parametrize("size, overlap", [(10, 10), (10, 11), (10, -1), (0, 0)])
def test_chunk_text_rejects_bad_overlap(size, overlap):
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("some text", size, overlap)


def test_paragraph_windows_cover_the_text_on_paragraph_boundaries():
    text = reference_topics()["try"]
    spans = rag.paragraph_windows(text, 500, 150)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(end - start <= 500 for start, end in spans)
    for (s1, e1), (s2, e2) in zip(spans, spans[1:], strict=False):
        assert s1 < s2 <= e1 < e2, "each chunk moves on and leaves no gap"
        assert e1 - s2 <= 150, "the repeated part fits the overlap"
    breaks = {0, len(text)} | {m.end() for m in re.finditer(r"\n[ \t]*\n", text)}
    on_boundary = sum(s in breaks for s, _ in spans) / len(spans)
    assert on_boundary > 0.6, "most chunks start at a paragraph"
    assert rag.paragraph_windows("", 10, 2) == []
    with pytest.raises(ValueError):
        rag.paragraph_windows(text, 10, 10)


def test_chunk_corpus_records_where_each_chunk_comes_from(chunks):
    topics = reference_topics()
    assert {c.topic for c in chunks} == set(SLICE)
    for c in chunks:
        assert topics[c.topic][c.start : c.start + len(c.text)] == c.text
        assert c.prefix == "" and c.search_text == c.text
    for name in SLICE:
        mine = [c for c in chunks if c.topic == name]
        assert [c.index for c in mine] == list(range(len(mine)))
        assert [c.text for c in mine] == chunk_text(topics[name], 300, 60)
    everything = chunk_corpus(size=2000, overlap=0)
    assert {c.topic for c in everything} == set(topics)
    assert sum(len(c.text) for c in everything) == sum(map(len, topics.values()))


def test_heading_prefix_is_the_first_line_never_the_topic_key():
    with_heading = chunk_corpus(["with", "try"], 400, 100, with_heading=True)
    assert all(c.prefix == reference_topics()[c.topic].split("\n")[0] for c in with_heading)
    assert with_heading[0].prefix == 'The "with" statement'
    assert with_heading[-1].search_text.startswith('The "try" statement\n')
    keyed = [c for c in chunk_corpus(["execmodel"], 400, 100, with_heading=True)]
    assert all("execmodel" not in c.prefix for c in keyed)
    by_paragraph = chunk_corpus(["with"], 400, 100, boundaries="paragraphs")
    assert "".join(c.text for c in by_paragraph)  # runs; coverage is tested above
    with pytest.raises(ValueError, match="boundaries"):
        chunk_corpus(["with"], 400, 100, boundaries="sentences")


# -- BM25 --------------------------------------------------------------------------------------
def test_tokenize_lowercases_words_digits_and_underscores():
    assert tokenize("The __init__() method, x2 = Ω!") == ["the", "__init__", "method", "x2", "ω"]


def test_search_tokens_keep_operators_and_drop_plural_endings():
    assert rag.search_tokens("Why does -2 ** 2 give -4?") == ["why", "doe", "-", "2", "**", "2",
                                                              "give", "-", "4"]
    assert rag.search_tokens("x //= y; a @ b; ~x; a <= b != c; f(*args, **kw) -> None ...") == [
        "x", "//=", "y", "a", "@", "b", "~", "x", "a", "<=", "b", "!=", "c", "f", "*", "arg",
        "**", "kw", "->", "none", "..."]
    assert [rag.stem(w) for w in ("comprehensions", "entries", "class", "is", "lists")] == [
        "comprehension", "entry", "class", "is", "list"]
    chunks = chunk_corpus(["power", "binary", "with"], 400, 100)
    found = rag.BM25Retriever(chunks, tokenizer=rag.search_tokens).search("what does ** do", 1)
    assert chunks[found[0][0]].topic == "power"
    assert rag.BM25Retriever(chunks).name == "bm25"


def test_bm25_on_a_hand_example():
    docs = [["a", "b", "a"], ["b", "c"], ["d"]]
    bm25 = BM25().fit(docs)
    n, avgdl, k1, b = 3, 2.0, 1.5, 0.75
    idf = {t: np.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in [("a", 1), ("b", 2)]}

    def term(t, tf, length):
        return idf[t] * tf / (tf + k1 * (1 - b + b * length / avgdl))

    expected = [term("a", 2, 3) + term("b", 1, 3), term("b", 1, 2), 0.0]
    assert np.allclose(bm25.scores(["a", "b", "zzz"]), expected, atol=1e-12)
    # a repeated query token counts as often as it occurs
    assert np.allclose(bm25.scores(["a", "a"]), [2 * term("a", 2, 3), 0, 0], atol=1e-12)
    assert np.array_equal(bm25.scores(["unknown"]), np.zeros(3))
    with pytest.raises(ValueError):
        BM25().fit([])


QUERIES = ["How do I catch an exception and clean up afterwards?",
           "what does the with statement do with a context manager",
           "loop loop loop over a sequence for else",
           "import a module from a package relative import",
           "zzzz qqqq", "return return value None"]


def test_bm25_equals_bm25s_on_a_slice_of_the_corpus(chunks):
    bm25s = pytest.importorskip("bm25s")  # a dev extra: the independent reference
    docs = [tokenize(c.text) for c in chunks]
    mine = BM25(k1=1.5, b=0.75).fit(docs)
    reference = bm25s.BM25(method="lucene", k1=1.5, b=0.75, dtype="float64")
    reference.index(docs, show_progress=False)
    for query in QUERIES:
        tokens = tokenize(query)
        expected = reference.get_scores(tokens)
        assert np.allclose(mine.scores(tokens), expected, rtol=0, atol=1e-5), query
    assert mine.scores(tokenize(QUERIES[1])).max() > 1.0, "the queries do match something"


def test_bm25_parameters_matter():
    docs = [["x"] * 5 + ["y"] * 20, ["x"], ["y", "z"]]
    plain = BM25().fit(docs).scores(["x"])
    no_length = BM25(b=0.0).fit(docs).scores(["x"])
    assert plain[1] > plain[0], "b discounts the long document"
    assert no_length[0] > no_length[1], "without length normalisation tf wins"


# -- dense -------------------------------------------------------------------------------------
def test_cosine_top_k_equals_a_brute_force_sort():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(50, 8))
    matrix[7] = 0.0  # a zero row scores 0
    query = rng.normal(size=8)
    for k in (0, 1, 5, 50, 80):
        ids, scores = cosine_top_k(query, matrix, k)
        sims = [0.0 if not np.any(row) else
                row @ query / np.linalg.norm(row) / np.linalg.norm(query) for row in matrix]
        expected = sorted(range(50), key=lambda i: (-sims[i], i))[:k]
        assert list(ids) == expected
        assert np.allclose(scores, [sims[i] for i in expected])
    ids, scores = cosine_top_k(np.zeros(8), matrix, 3)
    assert list(ids) == [0, 1, 2] and not scores.any(), "a zero query: all 0, lower index first"
    ties = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    assert list(cosine_top_k(np.array([1.0, 0.0]), ties, 4)[0]) == [0, 1, 3, 2]
    with pytest.raises(ValueError):
        cosine_top_k(query, matrix, -1)


@pytest.fixture
def encoder():
    return HashingEncoder()


def test_faiss_flat_equals_brute_force_and_hnsw_is_close(chunks, encoder, tmp_path):
    flat = rag.DenseRetriever(encoder, chunks, "flat", cache=tmp_path)
    hnsw = rag.DenseRetriever(encoder, chunks, "hnsw", cache=tmp_path)
    vectors = flat.embeddings.vectors
    assert vectors.shape == (len(chunks), encoder.dim) and vectors.dtype == np.float32
    agree = 0
    for query in QUERIES[:4] + ["for loop", "global variable", "lambda function"]:
        q = encoder.encode([query])[0]
        ids, scores = cosine_top_k(q, vectors, 10)
        found = flat.search(query, 10)
        assert [i for i, _ in found] == list(ids) or np.allclose(
            [s for _, s in found], scores, atol=1e-6), "equal up to ties"
        assert np.allclose([s for _, s in found], scores, atol=1e-5)
        agree += hnsw.search(query, 1)[0][0] == ids[0]
    assert agree >= 6, "HNSW finds the exact nearest chunk almost always on a small index"
    assert flat.build_seconds >= 0 and hnsw.build_seconds >= 0
    with pytest.raises(ValueError, match="index"):
        rag.DenseRetriever(encoder, chunks, "ivf", cache=tmp_path)


def test_embedding_cache_hit_returns_the_same_array(chunks, encoder, tmp_path):
    first = rag.embed_chunks(encoder, chunks, cache=tmp_path)
    second = rag.embed_chunks(encoder, chunks, cache=tmp_path)
    assert not first.from_cache and second.from_cache and encoder.calls == 1
    assert second.cache_path == first.cache_path and first.cache_path.parent == tmp_path
    assert np.array_equal(first.vectors, second.vectors)
    other = rag.embed_chunks(encoder, chunk_corpus(SLICE, size=300, overlap=50), cache=tmp_path)
    assert not other.from_cache and other.cache_path != first.cache_path, \
        "the chunking is part of the key"
    headed = rag.embed_chunks(encoder, chunk_corpus(SLICE, 300, 60, with_heading=True),
                              cache=tmp_path)
    assert headed.cache_path not in (first.cache_path, other.cache_path)
    uncached = rag.embed_chunks(encoder, chunks, cache=False)
    assert uncached.cache_path is None and np.array_equal(uncached.vectors, first.vectors)


# -- keyword retrievers and fusion -------------------------------------------------------------
def test_retrievers_share_one_interface(chunks, encoder, tmp_path):
    bm25, tfidf = rag.BM25Retriever(chunks), rag.TfidfRetriever(chunks)
    dense = rag.DenseRetriever(encoder, chunks, cache=tmp_path)
    hybrid = rag.HybridRetriever([bm25, tfidf, dense], k=60, weights=[1, 1, 0.2])
    for retriever in (bm25, tfidf, dense, hybrid):
        found = retriever.search("the assert statement raises AssertionError", 5)
        assert len(found) == 5 and len({i for i, _ in found}) == 5
        scores = [s for _, s in found]
        assert scores == sorted(scores, reverse=True)
        if retriever is not dense:  # the fake encoder is too crude to be asked for that
            assert chunks[found[0][0]].topic == "assert", type(retriever).__name__
    raw = bm25.bm25.scores(tokenize("the while loop"))
    assert [i for i, _ in bm25.search("the while loop", 3)] == list(np.argsort(-raw)[:3])


def test_reciprocal_rank_fusion_on_a_hand_example():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=1)
    # a: 1/2 + 1/3, b: 1/3, c: 1/4 + 1/2, d: 1/4
    assert fused == ["a", "c", "b", "d"]
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]]) == ["x", "y"], "ties: first seen"
    assert reciprocal_rank_fusion([["p"], ["q"], ["q", "p"]], k=60) == ["q", "p"]
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=60, weights=[1, 2]) == ["b", "a"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1, 2])


class FixedRetriever:
    """A first stage that always returns the same chunk order."""

    def __init__(self, order):
        self.order = order

    def search(self, query, k):
        return [(i, 1.0 / (rank + 1)) for rank, i in enumerate(self.order[:k])]


def test_reranker_scores_the_question_after_each_topics_best_chunk_and_fuses_the_orders():
    import torch

    from llmlab.chat import ChatModel

    model = ChatModel.load(torch.float32)
    texts = {"pass": "The pass statement does nothing. It is a placeholder.",
             "break": "break ends the nearest enclosing for or while loop.",
             "del": "del removes a binding of a name from a namespace.",
             "global": "The global statement makes names refer to module-level variables."}
    chunks = [Chunk(topic, 0, 0, text) for topic, text in texts.items()]
    chunks.append(Chunk("break", 1, 10, "A break inside a try with a finally runs the finally."))
    # the first stage: chunk 1 is break's best chunk, chunk 4 a later one of the same topic
    first = FixedRetriever([0, 2, 1, 4, 3])
    question = "How do I leave a loop early?"
    reranker = rag.QueryLikelihoodReranker(first, chunks, model, n=3, k=60)
    top = [0, 2, 1]  # the best chunk of each of the first 3 topics, in the first stage's order
    ids = model.tokenizer.encode(question, allowed_special="none")
    alone = [model.score(model.encode(rag.RERANK_TEMPLATE.format(passage=chunks[i].search_text)),
                         [ids])[0] for i in top]
    batched = reranker.question_log_probs(question, top)
    np.testing.assert_allclose(batched, alone, atol=2e-3)
    reranked = [top[j] for j in np.argsort(-np.array(alone), kind="stable")]
    assert reranked[0] == 1, "the loop passage makes the question likeliest"
    found = reranker.search(question, 5)
    fused = reciprocal_rank_fusion([top, reranked], 60)
    # the first 3 topics in fused order, then the rest of the first stage's chunks in its order
    assert [i for i, _ in found] == fused + [4, 3]
    assert fused.index(1) < top.index(1), "the reranking lifts break"


# -- evaluation --------------------------------------------------------------------------------
def test_rank_topics_and_the_metrics_on_hand_examples():
    topics = ["with", "try", "with", "for", "try", "if"]
    assert rank_topics([2, 0, 4, 1, 3], topics) == ["with", "try", "for"]
    ranked = ["with", "try", "for", "if"]
    assert recall_at_k(ranked, ["for"], 1) == 0.0 and recall_at_k(ranked, ["for"], 3) == 1.0
    assert recall_at_k(ranked, ["else", "try"], 2) == 1.0 and recall_at_k(ranked, [], 5) == 0.0
    assert mean_reciprocal_rank(ranked, ["for", "if"]) == pytest.approx(1 / 3)
    assert mean_reciprocal_rank(ranked, ["if"], k=3) == 0.0
    assert mean_reciprocal_rank(ranked, ["with"]) == 1.0
    assert rag.corpus_recall([ranked, ["for"]], [["try"], ["with"]], 2) == 0.5
    assert rag.corpus_mrr([ranked, ranked], [["try"], ["nothing"]]) == 0.25


def test_evaluate_counts_hits_by_topic(chunks):
    items = [{"q": "the assert statement AssertionError", "topics": ["assert"]},
             {"q": "the with statement context manager __enter__", "topics": ["with"]},
             {"q": "zzzz qqqq", "topics": ["pass"]}]
    result = rag.evaluate(rag.BM25Retriever(chunks), items, chunks, ks=(1, 5), mrr_k=10)
    assert result["n"] == 3 and result["ranks"][:2] == [1, 1]
    assert result["recall@1"] == pytest.approx(2 / 3) and result["ms_per_query"] >= 0
    assert result["mrr@10"] == pytest.approx((2 + (1 / result["ranks"][2]
                                                    if result["ranks"][2] else 0)) / 3)


def test_questions_load_check_and_split(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"q": "How?", "topics": ["with"], "split": "dev"},
                                {"q": "Why?", "topics": ["try", "raise"], "split": "test"}]))
    assert [q["q"] for q in rag.questions(path=path)] == ["How?", "Why?"]
    assert [q["q"] for q in rag.questions("test", path=path)] == ["Why?"]
    path.write_text(json.dumps([{"q": "How?", "topics": ["no-such-topic"]}]))
    with pytest.raises(ValueError, match="no-such-topic"):
        rag.questions(path=path)
    path.write_text(json.dumps([{"q": "How?"}]))
    with pytest.raises(ValueError, match="topics"):
        rag.questions(path=path)


@pytest.mark.skipif(not rag.QUESTIONS_PATH.exists(), reason="the question set is not merged yet")
def test_the_course_question_set_has_two_halves():
    every = rag.questions()
    dev, test = rag.questions("dev"), rag.questions("test")
    assert len(every) >= 80 and len(dev) + len(test) == len(every)
    assert abs(len(dev) - len(test)) <= 1


# -- generation --------------------------------------------------------------------------------
def test_build_messages_numbers_the_sources():
    messages = build_messages("What does pass do?",
                              [("pass", "pass is a null operation."), ("del", "Deletion.")])
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert "only" in system and "[1]" in system and "[2]" in system
    assert messages[1]["content"] == ("[1] (pass) pass is a null operation.\n\n"
                                      "[2] (del) Deletion.\n\n"
                                      "Question: What does pass do?")
    assert build_messages("Q?", [])[1]["content"] == "Question: Q?"


def test_cited_numbers_reads_bracketed_numbers_once_in_order():
    assert cited_numbers("Yes [2]. Also [1, 3] and again [2].") == [2, 1, 3]
    assert cited_numbers("x[10] [a] [1.5] (1) none") == [10]
    assert cited_numbers("") == []
    assert cited_numbers("[ 3 ] [1,2] [7]", n_sources=2) == [1, 2], "no source 3 or 7"
    stripped = build_messages("Q?", [("t", "  text \n")])[1]["content"]
    assert stripped == "[1] (t) text\n\nQuestion: Q?", "source text stripped"


class ScriptedLLM:
    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def chat(self, messages, **options):
        self.seen.append((messages, options))
        return self.reply


def test_answer_shows_the_retrieved_chunks_and_reads_the_citations(chunks):
    llm = ScriptedLLM("An assert statement raises AssertionError when the test is false [1]. "
                      "See also [7].")
    result = rag.answer(llm, "What does assert do?", rag.BM25Retriever(chunks), chunks, k=2)
    (messages, options), = llm.seen
    assert len(result.sources) == 2 and result.cited == [1], "[7] is not a source"
    assert result.cited_topics == ["assert"] and result.sources[0][0] == "assert"
    assert messages[1]["content"].startswith(f"[1] (assert) {chunks[result.chunk_ids[0]].text}")
    assert options["max_tokens"] == 200
    assert rag.closed_book(llm, "What does assert do?") == llm.reply
    assert llm.seen[-1][0] == [{"role": "user", "content": "What does assert do?"}]


def test_faithfulness_counts_content_words_found_in_the_cited_sources():
    sources = [("pass", "pass is a null operation; nothing happens."),
               ("del", "Deletion of a target list deletes each target.")]
    assert rag.faithfulness("pass is a null operation [1].", sources) == 1.0
    assert rag.faithfulness("Deletion deletes each target [1].", sources) == 0.0, \
        "words from a source it does not cite do not count"
    assert rag.faithfulness("Deletion deletes each target [2].", sources) == 1.0
    assert rag.faithfulness("pass prints bananas", sources) == pytest.approx(1 / 3)
    assert rag.faithfulness("It is [1].", sources) == 1.0, "no content words: no claim"
    assert rag.content_words("The pass statement [1] is 42 times faster") == [
        "pass", "statement", "times", "faster"]


def test_chunk_is_a_plain_record():
    c = Chunk("with", 0, 0, "text", "Heading")
    assert c.search_text == "Heading\ntext"
    with pytest.raises(AttributeError):
        c.text = "other"
