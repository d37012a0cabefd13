"""Word vectors: a small, readable word2vec (skip-gram with negative sampling) in torch.

Module 06 builds these pieces step by step; later modules (retrieval, RAG) import them.

The pipeline, in the order the functions appear:

1. `tokenize` — lower-case the text and cut it into words (`TOKEN_PATTERN`).
2. `Vocabulary.build` — keep the words seen at least `min_count` times, most frequent first.
3. `keep_probabilities` / `subsample` — optionally drop some occurrences of very frequent words
   ("the", "a", "is"), which carry little information about their neighbours.
4. `skipgram_pairs` — every (centre word, context word) pair within a window.
5. `noise_distribution` — the unigram distribution raised to the power 0.75, from which the
   negative (random) context words are drawn.
6. `SkipGram` and `sgns_loss` — two embedding tables and the negative-sampling loss.
7. `train_skipgram` — the training loop (mini-batches, negatives, Adam, a progress bar).
8. `WordVectors` — the learned, unit-length vectors: `most_similar`, `analogy`,
   `sentence_vector` (mean pooling).

`train_word_vectors` runs the whole pipeline on a text and caches the result under
``llmlab.CACHE_DIR``, keyed by the text's sha256 and every hyperparameter, so a second call is
instant. `course_word_vectors` is the one call later modules use: the vectors of
`course_corpus()` (the Python reference manual plus package docstrings, all offline).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmlab import CACHE_DIR
from llmlab.progress import tqdm

#: A word: a lower-case letter followed by letters and digits ("float64" is one word; "__init__"
#: gives "init"; punctuation, underscores and numbers on their own are dropped).
TOKEN_PATTERN = re.compile(r"[a-z][a-z0-9]*")
#: Folder of the cached training results.
EMBEDDINGS_CACHE = CACHE_DIR / "embeddings"
#: Part of every cache key: raise it when a change to the training code changes its results.
CACHE_VERSION = 1


def tokenize(text: str) -> list[str]:
    """The words of `text`, lower-cased, in order (see `TOKEN_PATTERN`)."""
    return TOKEN_PATTERN.findall(text.lower())


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Words with their ids and counts: id 0 is the most frequent word.

    Build one with `Vocabulary.build`; `encode` turns words into ids.
    """

    words: tuple[str, ...]
    counts: np.ndarray  # int64, shape (len(words),): how often each word occurs in the text
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        if counts.shape != (len(self.words),):
            raise ValueError(f"need one count per word, got {counts.shape} for {len(self.words)}")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})
        if len(self.index) != len(self.words):
            raise ValueError("words must be unique")

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 5) -> Vocabulary:
        """Every word that occurs at least `min_count` times, by count (descending), ties A-Z."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counted = Counter(tokens)
        kept = sorted((w for w, n in counted.items() if n >= min_count),
                      key=lambda w: (-counted[w], w))
        return cls(tuple(kept), np.array([counted[w] for w in kept], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids (int64) of the tokens that are in the vocabulary; the others are skipped."""
        index = self.index
        return np.array([index[t] for t in tokens if t in index], dtype=np.int64)


def keep_probabilities(counts: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Probability of keeping each occurrence of a word when subsampling frequent words.

    word2vec's rule: a word with relative frequency ``f`` is kept with probability
    ``min(1, sqrt(threshold / f) + threshold / f)``. Words with ``f`` up to about 2.6 times
    ``threshold`` are always kept; "the", with ``f`` of a few percent, loses most of its
    occurrences.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    ratio = threshold / (counts / counts.sum())
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


def subsample(ids: np.ndarray, counts: np.ndarray, threshold: float,
              rng: np.random.Generator) -> np.ndarray:
    """Drop occurrences of frequent words at random (see `keep_probabilities`); keeps the order."""
    ids = np.asarray(ids, dtype=np.int64)
    keep = keep_probabilities(counts, threshold)
    return ids[rng.random(ids.size) < keep[ids]]


def skipgram_pairs(ids: np.ndarray, window: int,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) pairs of a word sequence: the words at most `window` positions apart.

    Without `rng`, position ``i`` is paired with every ``j != i`` with ``|i - j| <= window``. With
    `rng`, as in word2vec, every centre draws its own window size uniformly from
    ``1 .. window``, so near neighbours are used more often than far ones.

    Returns two int64 arrays ``(centres, contexts)`` of equal length. Pairs come grouped by the
    distance ``|i - j|`` (1 first), then contexts to the right before contexts to the left, then
    by centre position — an order that only matters for reproducibility: training shuffles them.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = ids.size
    reach = np.full(n, window) if rng is None else rng.integers(1, window + 1, size=n)
    centres, contexts = [], []
    for distance in range(1, min(window, max(n - 1, 0)) + 1):
        right = reach[: n - distance] >= distance  # centre i, context i + distance
        centres.append(ids[: n - distance][right])
        contexts.append(ids[distance:][right])
        left = reach[distance:] >= distance  # centre i, context i - distance
        centres.append(ids[distance:][left])
        contexts.append(ids[: n - distance][left])
    if not centres:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Probabilities (float64, summing to 1) for drawing negative words: ``count ** power``.

    The power 0.75 makes rare words a little more likely than their share of the text.
    """
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def sgns_loss(centre: torch.Tensor, context: torch.Tensor,
              negatives: torch.Tensor) -> torch.Tensor:
    """The skip-gram negative-sampling loss, averaged over a batch of pairs.

    For a centre vector ``u``, its true context vector ``v`` and ``K`` negative vectors ``n_k``::

        loss = -log sigmoid(u . v) - sum_k log sigmoid(-u . n_k)

    Args:
        centre: shape ``(B, d)``, the centre words' vectors (from the centre table).
        context: shape ``(B, d)``, the true context words' vectors (from the context table).
        negatives: shape ``(B, K, d)``, the negative words' vectors (from the context table).

    Returns:
        The mean over the ``B`` pairs, a 0-dimensional tensor. `F.logsigmoid` keeps it finite
        for any score.
    """
    positive = (centre * context).sum(-1)  # (B,)
    negative = (negatives * centre.unsqueeze(1)).sum(-1)  # (B, K)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


class SkipGram(nn.Module):
    """word2vec's skip-gram model: two embedding tables of shape ``(vocab_size, dim)``.

    ``centre`` holds the vectors of words as centres — the word vectors we keep after training;
    ``context`` holds their vectors as context (or negative) words. The score of a pair is the
    dot product of the two. As in word2vec, the centre vectors start small and random
    (uniform in ``±0.5 / dim``, drawn from `generator`) and the context vectors at zero.
    """

    def __init__(self, vocab_size: int, dim: int, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.centre = nn.Embedding(vocab_size, dim)
        self.context = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            self.centre.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=generator)
            self.context.weight.zero_()

    def forward(self, centres: torch.Tensor, contexts: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """`sgns_loss` of a batch of ids: centres (B,), contexts (B,), negatives (B, K)."""
        return sgns_loss(self.centre(centres), self.context(contexts), self.context(negatives))


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of `train_word_vectors` (all part of the cache key)."""

    min_count: int = 5  # rarer words get no vector
    dim: int = 64  # length of every word vector
    window: int = 5  # largest distance between a centre and a context word
    negatives: int = 5  # negative words per (centre, context) pair
    subsample: float | None = 1e-4  # threshold of `keep_probabilities`; None keeps every word
    epochs: int = 5  # passes over the text
    batch_size: int = 4096  # pairs per optimisation step
    lr: float = 0.01  # Adam's learning rate at the start; it decays linearly to 0
    seed: int = 0  # seeds the initial vectors and every random draw


def train_skipgram(ids: np.ndarray, counts: np.ndarray, config: TrainingConfig = TrainingConfig(),
                   *, progress: bool = True) -> tuple[SkipGram, np.ndarray]:
    """Train a `SkipGram` model on a sequence of word ids; return it and the loss of every batch.

    Every epoch subsamples the text afresh (if ``config.subsample``), forms the pairs with
    word2vec's random window sizes, shuffles them and walks through them in mini-batches. Each
    pair gets ``config.negatives`` negative words drawn from `noise_distribution` (a negative may
    happen to equal the true context word; with thousands of words that is rare and harmless).
    The optimiser is `torch.optim.Adam`, its learning rate decaying linearly from ``config.lr``
    to 0 over the run. All randomness comes from ``config.seed``; with the same number of torch
    threads, the same inputs give the same model.

    Args:
        ids: the text as word ids (int), e.g. ``Vocabulary.encode(tokens)``.
        counts: how often each word occurs (defines the vocabulary size and the noise).
        config: the hyperparameters (``min_count`` is not used here).
        progress: show a `tqdm` progress bar.
    """
    counts = np.asarray(counts, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = SkipGram(len(counts), config.dim, generator=generator)
    noise = noise_distribution(counts)

    # The pairs of every epoch, drawn up front so the progress bar knows the number of steps.
    epochs = []
    for _ in range(config.epochs):
        text = ids if config.subsample is None else subsample(ids, counts, config.subsample, rng)
        centres, contexts = skipgram_pairs(text, config.window, rng)
        order = rng.permutation(centres.size)
        epochs.append((torch.from_numpy(centres[order]), torch.from_numpy(contexts[order])))
    n_steps = sum(math.ceil(len(c) / config.batch_size) for c, _ in epochs)

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 lambda step: 1.0 - step / max(n_steps, 1))
    losses = np.empty(n_steps)
    step = 0
    with tqdm(total=n_steps, desc="word2vec", unit="batch", disable=not progress) as bar:
        for centres, contexts in epochs:
            for start in range(0, len(centres), config.batch_size):
                batch_centres = centres[start: start + config.batch_size]
                batch_contexts = contexts[start: start + config.batch_size]
                negatives = rng.choice(len(counts), size=(len(batch_centres), config.negatives),
                                       p=noise)
                loss = model(batch_centres, batch_contexts, torch.from_numpy(negatives))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                losses[step] = loss.item()
                step += 1
                bar.update()
                if step % 50 == 0 or step == n_steps:
                    bar.set_postfix(loss=f"{losses[max(0, step - 50):step].mean():.3f}")
    return model, losses


@dataclass(frozen=True, eq=False)
class WordVectors:
    """Unit-length word vectors with the usual queries.

    Every row of ``vectors`` is divided by its length when the object is made, so the cosine
    similarity of two words is the dot product of their rows. Ties in a ranking go to the lower
    row (for a `Vocabulary`'s order: the more frequent word).
    """

    words: tuple[str, ...]
    vectors: np.ndarray  # float32, shape (len(words), dim), rows of length 1 (or 0)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        vectors = np.array(self.vectors, dtype=np.float64)  # a copy: the caller's stays as it is
        if vectors.ndim != 2 or vectors.shape[0] != len(self.words):
            raise ValueError(f"need one row per word, got {vectors.shape} for {len(self.words)}")
        lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.where(lengths > 0, lengths, 1.0)).astype(np.float32)
        vectors.setflags(write=False)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})
        if len(self.index) != len(self.words):
            raise ValueError("words must be unique")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        """The unit vector of `word`; KeyError if it has none."""
        try:
            return self.vectors[self.index[word]]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary") from None

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(self[a] @ self[b])

    def nearest(self, query: np.ndarray, k: int = 10,
                exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The `k` words whose vectors have the largest cosine similarity to the vector `query`.

        Words in `exclude` are left out. Returns ``(word, similarity)`` pairs, best first.
        """
        query = np.asarray(query, dtype=np.float32)
        if query.shape != (self.dim,):
            raise ValueError(f"query must have shape ({self.dim},), got {query.shape}")
        length = float(np.linalg.norm(query))
        scores = self.vectors @ (query / length if length > 0 else query)
        skip = {self.index[w] for w in exclude if w in self.index}
        order = [i for i in np.argsort(-scores, kind="stable") if i not in skip][: max(k, 0)]
        return [(self.words[i], float(scores[i])) for i in order]

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The `k` nearest other words of `word` with their cosine similarities, best first."""
        return self.nearest(self[word], k, exclude=[word])

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """"`a` is to `b` as `c` is to ?": the words nearest to ``b - a + c``, without a, b, c."""
        return self.nearest(self[b] - self[a] + self[c], k, exclude=[a, b, c])

    def sentence_vector(self, text: str | Sequence[str]) -> np.ndarray:
        """Mean pooling: the average of the unit vectors of the known words of `text`.

        `text` is a string (split with `tokenize`) or a sequence of words. Unknown words are
        skipped; with no known word at all the result is the zero vector. The mean is not
        re-normalised (cosine similarity does that anyway).
        """
        tokens = tokenize(text) if isinstance(text, str) else list(text)
        rows = [self.index[t] for t in tokens if t in self.index]
        if not rows:
            return np.zeros(self.dim, dtype=np.float32)
        return self.vectors[rows].mean(axis=0)

    def save(self, path: Path) -> None:
        np.savez(path, words=np.array(self.words), vectors=self.vectors)

    @classmethod
    def load(cls, path: Path) -> WordVectors:
        with np.load(path) as data:
            return cls(tuple(str(w) for w in data["words"]), data["vectors"])


def train_word_vectors(text: str, config: TrainingConfig = TrainingConfig(), *,
                       progress: bool = True,
                       cache: bool = True) -> tuple[WordVectors, np.ndarray]:
    """Word vectors of a text, trained with `train_skipgram` (and cached); also the batch losses.

    The result is saved under `EMBEDDINGS_CACHE`, in a file named by the sha256 of the text, of
    every hyperparameter in `config` and of `CACHE_VERSION`, and loaded from there the next time
    (``cache=False`` always trains and saves nothing). The vectors kept are the centre vectors.
    """
    key = hashlib.sha256(text.encode("utf-8"))
    key.update(json.dumps({"version": CACHE_VERSION, **asdict(config)},
                          sort_keys=True).encode("utf-8"))
    path = EMBEDDINGS_CACHE / f"word2vec-{key.hexdigest()[:20]}.npz"
    if cache and path.exists():
        with np.load(path) as data:
            words = tuple(str(w) for w in data["words"])
            return WordVectors(words, data["vectors"]), data["losses"]
    tokens = tokenize(text)
    vocab = Vocabulary.build(tokens, config.min_count)
    model, losses = train_skipgram(vocab.encode(tokens), vocab.counts, config, progress=progress)
    vectors = WordVectors(vocab.words, model.centre.weight.detach().numpy())
    if cache:
        EMBEDDINGS_CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.npz")
        np.savez(partial, words=np.array(vectors.words), vectors=vectors.vectors, losses=losses)
        partial.replace(path)  # atomic: a reader never sees half a file
    return vectors, losses


def course_corpus() -> str:
    """The course's word2vec text: the Python reference manual and package docstrings.

    `llmlab.text.reference_text()` (about 465 KB) followed by the default collection of
    `llmlab.corpora.package_docstrings()` (numpy, torch, scikit-learn and matplotlib; about
    1.7 MB), joined by blank lines. Both change a little between versions of Python and of the
    packages, which changes the cache key too.
    """
    from llmlab.corpora import package_docstrings
    from llmlab.text import reference_text

    texts, _ = package_docstrings()
    return "\n\n".join([reference_text(), *texts])


def course_word_vectors(progress: bool = True) -> tuple[WordVectors, np.ndarray]:
    """The word vectors of module 06: `course_corpus()` with the default `TrainingConfig`."""
    return train_word_vectors(course_corpus(), TrainingConfig(), progress=progress)
