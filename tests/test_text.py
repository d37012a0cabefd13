"""llmlab.text: the reference corpus and its standard split (properties, not exact text)."""

import numpy as np
import pytest

from llmlab.text import (
    SEPARATOR,
    CharVocab,
    corpus_sha256,
    reference_char_data,
    reference_split,
    reference_text,
    reference_topics,
    split_topic,
)


def test_corpus_is_the_python_reference_manual():
    topics = reference_topics()
    assert len(topics) > 50 and list(topics) == sorted(topics)
    assert "assert" in topics and "with" in topics
    assert 300_000 < len(reference_text()) < 1_000_000
    assert len(corpus_sha256()) == 64


def test_the_last_tenth_of_every_topic_is_validation():
    train, valid = reference_split()
    pieces = [split_topic(t) for t in reference_topics().values()]
    for text, (head, tail) in zip(reference_topics().values(), pieces, strict=True):
        assert head + tail == text
        assert len(tail) == int(len(text) * 0.1)
    assert train == SEPARATOR.join(p[0] for p in pieces)
    assert valid == SEPARATOR.join(p[1] for p in pieces)
    assert 0.085 < len(valid) / (len(train) + len(valid)) < 0.11


def test_split_topic_rejects_bad_fractions():
    assert split_topic("abcdefghij", 0.3) == ("abcdefg", "hij")
    with pytest.raises(ValueError):
        split_topic("abc", 1.0)


def test_char_vocab_round_trips_and_names_unknown_characters():
    vocab = CharVocab.from_text("hello world")
    assert vocab.chars == tuple(sorted(set("hello world")))
    ids = vocab.encode("world hello")
    assert ids.dtype == np.int64 and vocab.decode(ids) == "world hello"
    with pytest.raises(KeyError, match="'z'"):
        vocab.encode("zebra")


def test_reference_char_data_covers_both_splits():
    vocab, train, valid = reference_char_data()
    t, v = reference_split()
    assert len(train) == len(t) and len(valid) == len(v)
    assert vocab.decode(valid[:200]) == v[:200]
    assert 60 < vocab.size < 200
