"""The course's language-model corpus: the Python reference manual that ships with Python.

`pydoc_data.topics.topics` maps about 80 topic names ("assert", "assignment", "with", ...) to the
plain-text pages that `help("with")` shows: roughly 465 KB of English prose and code, present in
every CPython install, so it needs no download.

The standard split: within every topic, the first 90% of its characters are training text and
the last 10% validation text. Topics are taken in sorted order and the pieces joined with one
blank line, so the split is the same on every machine running the same Python. The text changes
a little between Python releases; `corpus_sha256` identifies it, and code should check properties
of the corpus, never its exact content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Fraction of every topic's characters held out for validation (taken from the topic's end).
VALID_FRACTION = 0.1
#: What goes between two topics in the joined text.
SEPARATOR = "\n\n"


@cache
def reference_topics() -> dict[str, str]:
    """Topic name -> text of the Python reference manual, in sorted topic order."""
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def reference_text() -> str:
    """The whole corpus: every topic, in sorted order, joined by `SEPARATOR`."""
    return SEPARATOR.join(reference_topics().values())


def corpus_sha256() -> str:
    """sha256 of `reference_text()` (UTF-8), printed by benchmarks to name the corpus they used."""
    return hashlib.sha256(reference_text().encode("utf-8")).hexdigest()


def split_topic(text: str, valid_fraction: float = VALID_FRACTION) -> tuple[str, str]:
    """Split one topic: (first part, last `valid_fraction` of its characters)."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    cut = len(text) - int(len(text) * valid_fraction)
    return text[:cut], text[cut:]


@cache
def reference_split(valid_fraction: float = VALID_FRACTION) -> tuple[str, str]:
    """(train, valid): the standard split of the corpus, each joined by `SEPARATOR`."""
    parts = [split_topic(t, valid_fraction) for t in reference_topics().values()]
    return SEPARATOR.join(p[0] for p in parts), SEPARATOR.join(p[1] for p in parts)


@dataclass(frozen=True)
class CharVocab:
    """A character-level vocabulary: each distinct character gets an id, in sorted order."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text` (int64). Raises KeyError naming an unknown character."""
        stoi = self.stoi
        try:
            return np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as err:
            raise KeyError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


@cache
def reference_char_data() -> tuple[CharVocab, np.ndarray, np.ndarray]:
    """(vocab, train ids, valid ids) for character-level models on the standard split.

    The vocabulary is built from the whole corpus, so validation text has no unknown characters.
    """
    train, valid = reference_split()
    vocab = CharVocab.from_text(train + valid)
    return vocab, vocab.encode(train), vocab.encode(valid)
