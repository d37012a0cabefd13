"""Retrieval-augmented generation over the Python reference manual, measured.

The pipeline: load -> chunk -> embed -> index -> retrieve -> augment the prompt -> generate with
citations. Every step is a small function or class here, so the lecture can run them one by one:

    >>> from llmlab import rag
    >>> from llmlab.llm import LLM
    >>> chunks = rag.chunk_corpus(size=500, overlap=100)        # the reference manual, chunked
    >>> bm25 = rag.BM25Retriever(chunks)
    >>> bm25.search("How do I catch an exception?", k=3)        # [(chunk index, score), ...]
    >>> rag.evaluate(bm25, rag.questions("dev"), chunks)        # recall@1, recall@5, MRR@10
    >>> reply = rag.answer(LLM(), "What does the pass statement do?", bm25, chunks)
    >>> reply.text, reply.cited_topics, rag.faithfulness(reply.text, reply.sources)

**Documents** are the topics of `llmlab.text.reference_topics()` (what `help("with")` shows).
A topic is cut into `Chunk`s; a retriever ranks chunks; topics are ranked by their best chunk
(`rank_topics`), and a question counts as answered at k when one of the topics labelled as
answering it is among the first k (`recall_at_k`).

**Retrievers** share one interface, `search(query, k) -> [(chunk index, score), ...]`, best
first: `BM25Retriever` and `TfidfRetriever` (keywords), `DenseRetriever` (a sentence-embedding
model, all-MiniLM-L6-v2 in `llmlab.bert`, searched through a FAISS index, exact or approximate)
and `HybridRetriever` (reciprocal rank fusion of the others). `best_retriever` is the
combination chosen on the development half of the questions (`DEFAULT_CHUNKING`,
`BEST_FUSION`); `QueryLikelihoodReranker` reranks its best topics with the local language
model; `python -m llmlab.bench rag` measures them all on the test half.

**Generation**: `answer` puts the retrieved chunks into a prompt with numbered sources
(`build_messages`), and reads which ones the reply cites (`cited_numbers`); `faithfulness` is a
lexical check of how much of a reply can be found in what it cites, and `closed_book` asks the
same model with no sources, for comparison.

**Conventions** shared with the graded exercises: `chunk_text`, `tokenize`, `BM25`,
`cosine_top_k`, `reciprocal_rank_fusion`, `rank_topics`, `recall_at_k`, `mean_reciprocal_rank`,
`build_messages` and `cited_numbers` behave exactly as their docstrings state.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

#: The question set written for this module (see `llmlab/datasets/README.md`).
QUESTIONS_PATH = Path(__file__).resolve().parent / "datasets" / "rag_questions.json"
#: The chunking the library uses unless told otherwise (chosen on the development half).
DEFAULT_SIZE, DEFAULT_OVERLAP = 500, 100
#: `chunk_corpus`'s arguments for the benchmark and `best_retriever`, chosen on the development
#: half (82 questions, so one question is 0.012): 500/100 character windows with the topic's
#: heading line in front beat 1000/200 for MiniLM (recall@1 0.67 against 0.55-0.59: its input
#: stops at 256 word pieces, about 1000 characters, so long chunks lose their ends). The heading
#: lifted MiniLM's recall@1 from 0.63 to 0.67 on 500-character chunks (not on 1000-character
#: ones); paragraph boundaries did not help BM25 or TF-IDF.
DEFAULT_CHUNKING: dict[str, Any] = {"size": DEFAULT_SIZE, "overlap": DEFAULT_OVERLAP,
                                    "boundaries": "chars", "with_heading": True}
#: The HNSW index's settings (`DenseRetriever`'s keyword arguments).
HNSW_SETTINGS: dict[str, int] = {"hnsw_m": 32, "ef_construction": 64, "ef_search": 64}
#: How `best_retriever` fuses BM25 and the dense retriever (`HybridRetriever`'s arguments):
#: the usual k = 60, the dense ranking counted twice. On the development half the double weight
#: lifted recall@1 from 0.71 to 0.74 and cost one question at recall@5 (0.94 -> 0.93); k from 10
#: to 60 changed little.
BEST_FUSION: dict[str, Any] = {"k": 60, "weights": [1.0, 2.0], "depth": 100}


# ---------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------
def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Cut `text` into windows of `size` characters that overlap by `overlap` characters.

    The windows start at 0, step, 2*step, ... with step = size - overlap; the last one ends at
    `len(text)` (it may be shorter than `size`). We stop as soon as a window reaches the end, so
    no window lies wholly inside the one before it. `""` gives `[]`. Raises ValueError unless
    0 <= overlap < size.

    Overlap keeps a sentence that straddles a cut whole in at least one window; the price is
    that the overlapping characters are indexed twice.
    """
    return [text[start:end] for start, end in _windows(len(text), size, overlap)]


def _windows(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """The (start, end) offsets of `chunk_text`'s windows over a text of `length` characters."""
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    step, spans, start = size - overlap, [], 0
    while start < length:
        spans.append((start, min(start + size, length)))
        if start + size >= length:
            break
        start += step
    return spans


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def paragraph_windows(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) spans of chunks that begin and end on paragraph boundaries where they can.

    Paragraphs (text between blank lines) are packed greedily into a chunk while it stays within
    `size` characters; the next chunk starts with as many of the previous chunk's last
    paragraphs as fit in `overlap` characters (possibly none). A paragraph longer than `size` is
    cut by `chunk_text`'s rule. The spans cover the whole text. Same ValueError as `chunk_text`.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    if not text:
        return []
    # paragraphs as spans; each paragraph keeps the blank line that follows it
    cuts = [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]
    bounds = [0, *cuts] if not cuts or cuts[-1] != len(text) else [0, *cuts[:-1]]
    pieces: list[tuple[int, int]] = []
    for start, end in zip(bounds, [*bounds[1:], len(text)], strict=True):
        if end - start > size:  # an overlong paragraph: fixed windows inside it
            pieces += [(start + a, start + b) for a, b in _windows(end - start, size, overlap)]
        else:
            pieces.append((start, end))
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(pieces):
        last = first
        while last + 1 < len(pieces) and pieces[last + 1][1] - pieces[first][0] <= size:
            last += 1
        spans.append((pieces[first][0], pieces[last][1]))
        if last == len(pieces) - 1:
            break
        # the next chunk repeats the trailing pieces that fit in `overlap` (and leave room for
        # the next new piece, so that it always reaches past this chunk's end)
        nxt = last + 1
        while (nxt - 1 > first and pieces[last][1] - pieces[nxt - 1][0] <= overlap
               and pieces[last + 1][1] - pieces[nxt - 1][0] <= size):
            nxt -= 1
        first = nxt
    return spans


@dataclass(frozen=True)
class Chunk:
    """One piece of a topic: `text` is `topic_text[start : start + len(text)]`, the `index`-th
    chunk of `topic`. `prefix` (empty unless asked for) is put before the text when it is
    indexed: the topic's heading line, so a chunk from the middle of a page still says what the
    page is about. The topic name itself is never put in: it is the answer's label."""

    topic: str
    index: int
    start: int
    text: str
    prefix: str = ""

    @property
    def search_text(self) -> str:
        """What the retrievers index: the prefix line, then the text."""
        return f"{self.prefix}\n{self.text}" if self.prefix else self.text


def heading(topic_text: str) -> str:
    """A topic's heading: its first line (e.g. 'The "with" statement')."""
    return topic_text.split("\n", 1)[0].strip()


def chunk_corpus(topics: Mapping[str, str] | Iterable[str] | None = None,
                 size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP, *,
                 boundaries: Literal["chars", "paragraphs"] = "chars",
                 with_heading: bool = False) -> list[Chunk]:
    """Chunk the reference manual: every topic on its own, so no chunk mixes two topics.

    `topics`: None for all of `llmlab.text.reference_topics()`, some of its names, or a mapping
    name -> text of your own. `boundaries="chars"` cuts with `chunk_text`; `"paragraphs"` with
    `paragraph_windows`. `with_heading=True` gives every chunk its topic's heading as `prefix`.
    """
    from llmlab.text import reference_topics

    if topics is None:
        topics = reference_topics()
    elif not isinstance(topics, Mapping):
        every = reference_topics()
        topics = {name: every[name] for name in topics}
    chunks = []
    for name, text in topics.items():
        spans = (_windows(len(text), size, overlap) if boundaries == "chars"
                 else paragraph_windows(text, size, overlap) if boundaries == "paragraphs"
                 else None)
        if spans is None:
            raise ValueError(f"boundaries must be 'chars' or 'paragraphs', got {boundaries!r}")
        prefix = heading(text) if with_heading else ""
        chunks += [Chunk(name, i, start, text[start:end], prefix)
                   for i, (start, end) in enumerate(spans)]
    return chunks


def _texts(chunks: Sequence[Chunk | str]) -> list[str]:
    return [c if isinstance(c, str) else c.search_text for c in chunks]


# ---------------------------------------------------------------------------------------------
# Keyword retrieval: BM25 and TF-IDF
# ---------------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens: `re.findall(r"\\w+", text.lower())` (letters, digits, `_`)."""
    return re.findall(r"\w+", text.lower())


#: Words, and the operators of Python's grammar (longest first), as `search_tokens` reads them.
_SEARCH_TOKEN = re.compile(r"\w+|::=|\*\*=?|//=?|<<=?|>>=?|[<>=!]=|->|:=|\.\.\.|[-+*/%@&|^~<>]=?|=")


def stem(word: str) -> str:
    """A deliberately tiny stemmer: plural endings off ("comprehensions" -> "comprehension",
    "entries" -> "entry"); everything else as it is."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def search_tokens(text: str) -> list[str]:
    """`tokenize` made for questions about code: Python's operators (`**`, `//`, `@`, `~`,
    `<=`, `...`) are tokens too, since a question like "why does -2 ** 2 give -4?" is about
    nothing else, and words lose plural endings (`stem`). On the development half this lifts
    BM25's recall@5 by about 0.08 (see `llmlab.bench.rag`)."""
    return [stem(t) for t in _SEARCH_TOKEN.findall(text.lower())]


class BM25:
    """Okapi BM25 in Lucene's variant (what the `bm25s` package computes by default).

    For N documents, a term t found in df(t) of them, and a document d of |d| tokens:

        idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
        score(q, d) = sum over the query's tokens t of
                      idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

    A query token that appears twice counts twice (bm25s does the same). `k1` caps how much
    repeating a word inside one document can add (the term saturates); `b` is how strongly long
    documents are discounted (0: not at all; 1: fully by length / average length). The idf is
    never negative, unlike the original Robertson-Sparck Jones form.

    All the per-(term, document) weights are computed once, in `fit`, into a sparse matrix, so
    scoring a query only adds up a few of its rows.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b

    def fit(self, documents: Sequence[Sequence[str]]) -> BM25:
        """Index `documents`, each a list of tokens. Returns self."""
        from scipy import sparse

        self.n_docs = len(documents)
        if self.n_docs == 0:
            raise ValueError("BM25 needs at least one document")
        self.vocabulary: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for d, doc in enumerate(documents):
            for token, tf in _counts(doc).items():
                rows.append(self.vocabulary.setdefault(token, len(self.vocabulary)))
                cols.append(d)
                counts.append(tf)
        tf = np.asarray(counts, dtype=np.float64)
        lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        self.avgdl = float(lengths.mean())
        df = np.bincount(rows, minlength=len(self.vocabulary)).astype(np.float64)
        self.idf = np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))
        # (an index of empty documents only has no weights at all: avoid dividing by 0)
        norm = self.k1 * (1.0 - self.b + self.b * lengths / (self.avgdl or 1.0))
        weight = self.idf[rows] * tf / (tf + norm[cols])
        self.weights = sparse.csr_matrix((weight, (rows, cols)),
                                         shape=(len(self.vocabulary), self.n_docs))
        return self

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """The BM25 score of every document for the query, shape (N,), float64. Tokens the
        index has never seen add nothing."""
        ids = [self.vocabulary[t] for t in query_tokens if t in self.vocabulary]
        if not ids:
            return np.zeros(self.n_docs)
        picked = np.bincount(ids, minlength=len(self.vocabulary)).astype(np.float64)
        return np.asarray(self.weights.T @ picked).ravel()


def _counts(tokens: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    return counts


class Retriever(Protocol):
    """What every retriever offers: the `k` best chunks for a query, best first."""

    def search(self, query: str, k: int) -> list[tuple[int, float]]: ...


def _top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k highest scores as (index, score), descending, ties to the lower index."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in order]


class BM25Retriever:
    """BM25 over the chunks' `search_text`; `tokenizer` splits chunks and queries alike
    (`tokenize`, or `search_tokens` which also keeps operators and drops plural endings)."""

    def __init__(self, chunks: Sequence[Chunk | str], k1: float = 1.5, b: float = 0.75,
                 tokenizer: Callable[[str], list[str]] = tokenize):
        started = time.perf_counter()
        self.tokenizer = tokenizer
        self.name = "bm25" if tokenizer is tokenize else f"bm25_{tokenizer.__name__}"
        self.bm25 = BM25(k1, b).fit([tokenizer(t) for t in _texts(chunks)])
        self.build_seconds = time.perf_counter() - started

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        return _top(self.bm25.scores(self.tokenizer(query)), k)


class TfidfRetriever:
    """TF-IDF cosine similarity (scikit-learn's `TfidfVectorizer`: sublinear term frequency,
    English stop words removed, words of two or more characters), for comparison with BM25."""

    name = "tfidf"

    def __init__(self, chunks: Sequence[Chunk | str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        started = time.perf_counter()
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
        self.matrix = self.vectorizer.fit_transform(_texts(chunks))  # rows L2-normalised
        self.build_seconds = time.perf_counter() - started

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        query_vector = self.vectorizer.transform([query])
        return _top((self.matrix @ query_vector.T).toarray().ravel(), k)


# ---------------------------------------------------------------------------------------------
# Dense retrieval
# ---------------------------------------------------------------------------------------------
def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of `matrix` most similar to `query` by cosine: (indices, similarities).

    Rows and query are L2-normalised first; a zero vector (query or row) has similarity 0.
    The result is in descending order of similarity, ties to the lower index; k larger than the
    number of rows gives every row. Raises ValueError for a negative k.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    query = np.asarray(query, dtype=np.float64).ravel()
    matrix = np.asarray(matrix, dtype=np.float64)
    row_norms = np.linalg.norm(matrix, axis=1)
    query_norm = np.linalg.norm(query)
    dots = matrix @ query
    denom = row_norms * query_norm
    sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


def encoder_id(encoder) -> str:
    """What names an encoder in a cache key: its `cache_id` or `name` if it has one, else its
    class; then its width, its `max_length` and the dtype of its model's weights, when it has
    them (a bfloat16 encoder's vectors differ from a float32 one's)."""
    name = getattr(encoder, "cache_id", None) or getattr(encoder, "name", None)
    parts = [name or type(encoder).__qualname__, getattr(encoder, "dim", "?"),
             getattr(encoder, "max_length", "")]
    model = getattr(encoder, "model", None)
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        parts.append(str(getattr(first, "dtype", "")))
    return "-".join(str(p) for p in parts if p != "")


@dataclass
class Embeddings:
    """Chunk embeddings (n, dim) float32, where they were cached, whether they came from the
    cache, and the seconds it took to compute or load them."""

    vectors: np.ndarray
    cache_path: Path | None
    from_cache: bool
    seconds: float


def embed_chunks(encoder, chunks: Sequence[Chunk | str], cache: bool | Path = True,
                 progress: bool = False, batch_size: int = 32) -> Embeddings:
    """`encoder.encode` over the chunks' `search_text`, cached on disk.

    The cache file lives in `.cache/rag/` (or the folder `cache` names; `cache=False` turns it
    off) under a hash of the encoder's id, `llmlab.text.corpus_sha256()` and the exact chunk
    texts — which are themselves a function of the chunking parameters (size, overlap,
    boundaries, heading), so changing any of them makes a new entry.
    """
    from llmlab import CACHE_DIR
    from llmlab.text import corpus_sha256

    texts = _texts(chunks)
    path = None
    if cache:
        folder = Path(cache) if not isinstance(cache, bool) else CACHE_DIR / "rag"
        texts_sha = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
        key = hashlib.sha256(json.dumps({"encoder": encoder_id(encoder), "texts": texts_sha,
                                         "n": len(texts), "corpus": corpus_sha256()},
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = folder / f"embeddings-{key}.npy"
    started = time.perf_counter()
    if path is not None and path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return Embeddings(vectors, path, True, time.perf_counter() - started)
    vectors = np.asarray(_encode(encoder, texts, progress, batch_size), dtype=np.float32)
    seconds = time.perf_counter() - started
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, vectors)
        temporary.replace(path)  # a half-written file is never read as a cache entry
    return Embeddings(vectors, path, False, seconds)


def _encode(encoder, texts: Sequence[str], progress: bool = False,
            batch_size: int = 32) -> np.ndarray:
    try:
        return encoder.encode(list(texts), batch_size=batch_size, progress=progress)
    except TypeError:  # a simple encoder with `encode(texts)` only
        return encoder.encode(list(texts))


class DenseRetriever:
    """Nearest chunks in embedding space, searched through a FAISS index.

    `index="flat"`: `faiss.IndexFlatIP`, exact: every query is compared with every chunk (inner
    product, which is the cosine since the embeddings are L2-normalised). `index="hnsw"`:
    `faiss.IndexHNSWFlat`, approximate: a Hierarchical Navigable Small World graph (Malkov &
    Yashunin 2016) with `hnsw_m` links per vector, walked greedily from the top layer down;
    `ef_search` is how many candidates the walk keeps (more: slower and closer to exact).

    `build_seconds` is the index's build time alone; `embeddings` (an `Embeddings`) says how
    long the chunk embeddings took and whether they came from the cache.
    """

    def __init__(self, encoder, chunks: Sequence[Chunk | str],
                 index: Literal["flat", "hnsw"] = "flat", *, cache: bool | Path = True,
                 hnsw_m: int = 32, ef_construction: int = 64, ef_search: int = 64,
                 progress: bool = False):
        import faiss

        self.encoder = encoder
        self.name = f"dense_{index}"
        self.embeddings = embed_chunks(encoder, chunks, cache=cache, progress=progress)
        vectors = np.ascontiguousarray(self.embeddings.vectors, dtype=np.float32)
        started = time.perf_counter()
        if index == "flat":
            self.index = faiss.IndexFlatIP(vectors.shape[1])
        elif index == "hnsw":
            self.index = faiss.IndexHNSWFlat(vectors.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
        self.index.add(vectors)
        self.build_seconds = time.perf_counter() - started

    def embed_query(self, query: str) -> np.ndarray:
        return np.asarray(_encode(self.encoder, [query]), dtype=np.float32).reshape(1, -1)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        k = min(k, self.index.ntotal)
        scores, ids = self.index.search(self.embed_query(query), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


# ---------------------------------------------------------------------------------------------
# Hybrid retrieval
# ---------------------------------------------------------------------------------------------
def reciprocal_rank_fusion(rankings: Sequence[Sequence[Any]], k: float = 60,
                           weights: Sequence[float] | None = None) -> list:
    """Fuse several rankings (lists of ids, best first) into one (Cormack et al. 2009).

    score(d) = sum over the rankings that contain d of 1 / (k + rank of d), rank counted from 1.
    Returns every id, by score descending; ties keep the order of first appearance (reading
    ranking 1 first, then ranking 2, ...). Only ranks count, never the retrievers' own scores,
    so BM25's unbounded scores and a cosine in [-1, 1] fuse without any rescaling. A large `k`
    flattens the differences between ranks; a small one lets the top ranks dominate.
    `weights`, if given, multiply each ranking's terms (the library's extension; the graded
    version has none).
    """
    return [item for item, _ in fused_scores(rankings, k, weights)]


def fused_scores(rankings: Sequence[Sequence[Any]], k: float = 60,
                 weights: Sequence[float] | None = None) -> list[tuple[Any, float]]:
    """`reciprocal_rank_fusion`'s order with each id's fused score: [(id, score), ...]."""
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[Any, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}  # dicts keep first-appearance order
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))


class HybridRetriever:
    """Reciprocal rank fusion of other retrievers: each lists its `depth` best chunks and the
    fused score of a chunk is `reciprocal_rank_fusion`'s (the score it returns)."""

    def __init__(self, retrievers: Sequence[Retriever], k: float = 60, depth: int = 100,
                 weights: Sequence[float] | None = None, name: str = "hybrid"):
        self.retrievers, self.k, self.depth, self.name = list(retrievers), k, depth, name
        self.weights = list(weights) if weights is not None else [1.0] * len(self.retrievers)
        self.build_seconds = 0.0

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        rankings = [[i for i, _ in r.search(query, max(self.depth, k))] for r in self.retrievers]
        return fused_scores(rankings, self.k, self.weights)[:k]


def best_retriever(chunks: Sequence[Chunk | str], encoder=None, *,
                   bm25: BM25Retriever | None = None,
                   dense: DenseRetriever | None = None) -> HybridRetriever:
    """The course's best retriever on the development half: BM25 (on `search_tokens`) and
    MiniLM (exact search) fused by reciprocal rank fusion with `BEST_FUSION`, over chunks made
    with `DEFAULT_CHUNKING`. Pass ready-made `bm25` / `dense` retrievers over the same chunks
    to reuse them; otherwise `encoder` (default `llmlab.bert.SentenceEncoder.load()`) embeds
    the chunks."""
    if dense is None:
        if encoder is None:
            from llmlab.bert import SentenceEncoder

            encoder = SentenceEncoder.load()
        dense = DenseRetriever(encoder, chunks, "flat")
    bm25 = bm25 if bm25 is not None else BM25Retriever(chunks, tokenizer=search_tokens)
    return HybridRetriever([bm25, dense], name="hybrid", **BEST_FUSION)


#: The prompt `QueryLikelihoodReranker` scores a question after: the passage, then a line that
#: asks for a question it answers.
RERANK_TEMPLATE = ("Passage from the Python reference manual:\n{passage}\n\n"
                   "A question this passage answers:\n")
#: The reranker's settings, chosen on the development half (82 questions) over N = 10, 20, 30,
#: RRF k = 10, 60 and a weight of 0.5 or 1 for the reranked order: the first stage's 20 best
#: topics, fused with their reranked order at k = 60, equal weights. Recall@5 0.927 -> 0.988,
#: recall@1 0.744 -> 0.744, MRR@10 0.820 -> 0.838 (the reranked order alone: 0.951, 0.720).
RERANK_SETTINGS: dict[str, Any] = {"n": 20, "k": 60, "weights": [1.0, 1.0]}


class QueryLikelihoodReranker:
    """A second stage: rerank the `n` best topics of a `first` retriever by how likely the
    local language model finds the question after each topic's best chunk,
    log P(question | `RERANK_TEMPLATE` with the chunk) summed over the question's tokens (the
    same question for every chunk, so the sums compare). This is zero-shot reranking by
    question likelihood (Sachan et al., 2022, "Improving Passage Retrieval with Zero-Shot
    Question Generation"): the model reads question and passage together, which an embedding
    of each alone cannot. The reranked order is fused with the first stage's by reciprocal rank
    fusion (`RERANK_SETTINGS`); chunks below the first `n` topics keep the first stage's order
    after them. `model`: a `llmlab.chat.ChatModel` (default `ChatModel.load()`), scored in
    batches by `llmlab.prompting.continuation_log_probs`."""

    def __init__(self, first: Retriever, chunks: Sequence[Chunk], model=None, n: int = 20,
                 k: float = 60, weights: Sequence[float] = (1.0, 1.0), depth: int = 100,
                 name: str = "reranked"):
        if model is None:
            from llmlab.chat import ChatModel

            model = ChatModel.load()
        self.first, self.chunks, self.model = first, list(chunks), model
        self.n, self.k, self.weights, self.depth, self.name = n, k, list(weights), depth, name
        self.build_seconds = 0.0

    def question_log_probs(self, query: str, chunk_ids: Sequence[int]) -> np.ndarray:
        """log P(query | the prompt of each chunk), in nats."""
        from llmlab.prompting import continuation_log_probs

        prompts = [self.model.encode(RERANK_TEMPLATE.format(passage=self.chunks[i].search_text))
                   for i in chunk_ids]
        question = self.model.tokenizer.encode(query, allowed_special="none")
        if not question:
            raise ValueError("the question has no tokens")
        return continuation_log_probs(self.model, prompts, [question])[:, 0]

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        hits = [i for i, _ in self.first.search(query, max(self.depth, k))]
        best: dict[str, int] = {}  # topic -> its best chunk, in the first stage's order
        for i in hits:
            best.setdefault(self.chunks[i].topic, i)
        top = list(best.values())[: self.n]
        scores = self.question_log_probs(query, top)
        reranked = [top[j] for j in np.argsort(-scores, kind="stable")]
        chosen = set(top)
        rest = [(i, 0.0) for i in hits if i not in chosen]
        return (fused_scores([top, reranked], self.k, self.weights) + rest)[:k]


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def rank_topics(chunk_ids: Iterable[int], chunk_topics: Sequence[str]) -> list[str]:
    """Topics ranked by their best chunk: each topic at its first appearance in the chunk
    ranking `chunk_ids`; `chunk_topics[i]` is chunk i's topic."""
    return list(dict.fromkeys(chunk_topics[i] for i in chunk_ids))


def recall_at_k(ranked_topics: Sequence[str], gold_topics: Iterable[str], k: int) -> float:
    """1.0 when any gold topic is among the first `k` ranked topics, else 0.0."""
    gold = set(gold_topics)
    return 1.0 if any(t in gold for t in ranked_topics[:k]) else 0.0


def mean_reciprocal_rank(ranked_topics: Sequence[str], gold_topics: Iterable[str],
                         k: int = 10) -> float:
    """1 / rank of the first gold topic among the first `k` ranked topics (rank from 1), else
    0. Averaged over questions (`corpus_mrr`) this is the MRR@k."""
    gold = set(gold_topics)
    for rank, topic in enumerate(ranked_topics[:k], start=1):
        if topic in gold:
            return 1.0 / rank
    return 0.0


def corpus_recall(rankings: Sequence[Sequence[str]], golds: Sequence[Iterable[str]],
                  k: int) -> float:
    """Mean `recall_at_k` over questions (ranked topics and gold topics of each)."""
    return _mean([recall_at_k(r, g, k) for r, g in zip(rankings, golds, strict=True)])


def corpus_mrr(rankings: Sequence[Sequence[str]], golds: Sequence[Iterable[str]],
               k: int = 10) -> float:
    """Mean `mean_reciprocal_rank` over questions: the MRR@k of a question set."""
    return _mean([mean_reciprocal_rank(r, g, k) for r, g in zip(rankings, golds, strict=True)])


def _mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no questions to average over")
    return sum(values) / len(values)


def questions(split: Literal["dev", "test"] | None = None,
              path: str | Path | None = None) -> list[dict]:
    """The course's RAG questions, `{"q": str, "topics": [str, ...], "split": ...}` dicts (or
    those of the JSON file `path`, where "split" is optional); `split` keeps one half."""
    from llmlab.text import reference_topics

    source = Path(path) if path is not None else QUESTIONS_PATH
    items = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(items, list) or not items:
        raise ValueError(f"{source} must hold a non-empty JSON list of {{'q', 'topics'}}")
    known = reference_topics()
    for i, item in enumerate(items):
        if (not isinstance(item, dict) or not isinstance(item.get("q"), str)
                or not isinstance(item.get("topics"), list) or not item["topics"]):
            raise ValueError(f"item {i} of {source} needs a string 'q' and a list 'topics'")
        unknown = [t for t in item["topics"] if t not in known]
        if unknown:
            raise ValueError(f"item {i} of {source} names topics this Python's reference "
                             f"manual lacks: {', '.join(unknown)}")
    if split is not None:
        if split not in ("dev", "test"):
            raise ValueError(f"split must be 'dev', 'test' or None, got {split!r}")
        items = [item for item in items if item.get("split") == split]
    return items


def evaluate(retriever: Retriever, items: Sequence[dict], chunks: Sequence[Chunk],
             ks: Sequence[int] = (1, 5), mrr_k: int = 10, depth: int = 100) -> dict:
    """Recall@k for each k in `ks` and MRR@`mrr_k` of `retriever` on `items` (questions).

    Each question's `depth` best chunks are ranked into topics (`rank_topics`). Also returns the
    mean query time and, per question, the rank of its first gold topic (None: not in the first
    `mrr_k`), to look at the misses.
    """
    topics = [c.topic for c in chunks]
    rankings, seconds = [], 0.0
    for item in items:
        started = time.perf_counter()
        hits = retriever.search(item["q"], depth)
        seconds += time.perf_counter() - started
        rankings.append(rank_topics([i for i, _ in hits], topics))
    golds = [item["topics"] for item in items]
    result: dict[str, Any] = {"n": len(items)}
    for k in ks:
        result[f"recall@{k}"] = corpus_recall(rankings, golds, k)
    result[f"mrr@{mrr_k}"] = corpus_mrr(rankings, golds, mrr_k)
    result["ms_per_query"] = 1000 * seconds / max(len(items), 1)
    result["ranks"] = [next((r for r, t in enumerate(ranking[:mrr_k], 1) if t in set(gold)),
                            None) for ranking, gold in zip(rankings, golds, strict=True)]
    return result


# ---------------------------------------------------------------------------------------------
# Generation with citations
# ---------------------------------------------------------------------------------------------
#: The system message of `build_messages`.
SYSTEM_PROMPT = ("Answer the question using only the numbered sources in the user's message. "
                 "Cite the sources you use by their numbers in square brackets, like [1] or "
                 "[2]. If the sources do not contain the answer, say that you do not know.")


def build_messages(question: str, sources: Sequence[tuple[str, str]]) -> list[dict]:
    """The chat for an answer with numbered citations.

    `sources` is a list of (topic, text). The system message is `SYSTEM_PROMPT` (answer only
    from the sources, cite them as [1], [2]); the user message lists the sources as
    `[1] (topic) text` blocks (the text stripped of surrounding whitespace), one blank line
    apart, then a blank line and `Question: <question>`.
    """
    blocks = [f"[{n}] ({topic}) {text.strip()}" for n, (topic, text) in enumerate(sources, start=1)]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n\n".join([*blocks, f"Question: {question}"])}]


_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


def cited_numbers(answer: str, n_sources: int | None = None) -> list[int]:
    """The source numbers an answer cites, in order of first citation, each once: `[2]`, and
    also `[1, 3]`, count; anything else in brackets does not. With `n_sources`, numbers outside
    1..n_sources (no such source) are skipped."""
    found = [int(n) for match in _CITATION.finditer(answer) for n in match.group(1).split(",")]
    if n_sources is not None:
        found = [n for n in found if 1 <= n <= n_sources]
    return list(dict.fromkeys(found))


@dataclass
class Answer:
    """A generated answer: its `text`, the `sources` shown to the model as (topic, text), their
    chunk ids, and the source numbers the text cites (`cited`, only those that exist)."""

    text: str
    sources: list[tuple[str, str]]
    chunk_ids: list[int]
    cited: list[int] = field(default_factory=list)

    @property
    def cited_topics(self) -> list[str]:
        return [self.sources[n - 1][0] for n in self.cited]


def answer(llm, question: str, retriever: Retriever, chunks: Sequence[Chunk], k: int = 3,
           max_tokens: int = 200, **sampling) -> Answer:
    """Retrieve the `k` best chunks, show them to `llm` (an `llmlab.llm.LLM`, or anything with
    its `chat`) as numbered sources and return its answer with what it cites."""
    ids = [i for i, _ in retriever.search(question, k)]
    sources = [(chunks[i].topic, chunks[i].text) for i in ids]
    text = llm.chat(build_messages(question, sources), max_tokens=max_tokens, **sampling)
    cited = cited_numbers(text, len(sources))
    return Answer(text, sources, ids, cited)


def closed_book(llm, question: str, max_tokens: int = 200, **sampling) -> str:
    """The model's answer with no sources at all: what it says from its weights alone."""
    return llm.chat([{"role": "user", "content": question}], max_tokens=max_tokens, **sampling)


#: Words too common to say anything about where an answer came from.
STOP_WORDS = frozenset("""a an and are as at be been but by can could do does for from has have
how if in into is it its it's may might more most no not of on or so such than that the their
them then there these they this those to too use used uses using was we were what when where
which while who why will with would you your also any each i me my one only other same should
some very""".split())


def content_words(text: str) -> list[str]:
    """The words of `text` that carry content: `tokenize`'s tokens without `STOP_WORDS`, and
    without bare numbers (a citation's [1] is not a claim)."""
    return [t for t in tokenize(text) if t not in STOP_WORDS and not t.isdigit()]


def faithfulness(answer_text: str, sources: Sequence[tuple[str, str]],
                 cited_only: bool = True) -> float:
    """A simple, measurable check of grounding: the fraction of the answer's content words
    (`content_words`) that occur in the sources it cites (all of `sources` when it cites none
    of them, or when `cited_only` is False). 1.0 means every content word can be found in a
    source; a low value flags words the model brought in itself. An answer with no content
    words scores 1.0 (it claims nothing).

    It is a lexical proxy: a faithful paraphrase scores lower and a wrong sentence stitched
    from source words scores high, so read it next to the answers, not instead of them.
    """
    words = content_words(answer_text)
    if not words:
        return 1.0
    numbers = cited_numbers(answer_text, len(sources))
    chosen = [sources[n - 1] for n in numbers] if cited_only and numbers else list(sources)
    vocabulary = {t for _, text in chosen for t in tokenize(text)}
    return sum(w in vocabulary for w in words) / len(words)

