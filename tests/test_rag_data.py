"""The retrieval question set of module 11 (`llmlab/datasets/rag_questions.json`) and its
reference answers (`rag_answers.json`): size, schema, labels that name real topics, coverage, and
the fixed dev/test split. Data only: no model, no retriever, no network."""

import importlib.util
import json
import random
import re
from collections import Counter
from importlib import resources

import pytest

from llmlab.text import reference_topics

#: The seed that split the questions once (see llmlab/datasets/README.md).
SPLIT_SEED = 11


def _load(name: str) -> list:
    return json.loads(resources.files("llmlab").joinpath("datasets", name).read_text("utf-8"))


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return _load("rag_questions.json")


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def test_enough_questions_with_the_agreed_schema(items):
    assert len(items) >= 100, "the set has at least 100 questions"
    assert len(items) >= 80
    names = set(reference_topics())
    for i, item in enumerate(items):
        assert isinstance(item, dict) and set(item) == {"q", "topics", "split"}, i
        assert isinstance(item["q"], str) and len(item["q"].strip()) > 10, i
        assert item["q"].rstrip().endswith("?"), f"question {i} is a question"
        topics = item["topics"]
        assert isinstance(topics, list) and 1 <= len(topics) <= 6, i
        assert all(isinstance(t, str) for t in topics), i
        assert len(set(topics)) == len(topics), f"question {i} lists a topic twice"
        unknown = set(topics) - names
        assert not unknown, f"question {i}: {sorted(unknown)} are not reference topics"
        assert item["split"] in ("dev", "test"), i


def test_no_duplicate_questions(items):
    counts = Counter(_normal(item["q"]) for item in items)
    assert [q for q, n in counts.items() if n > 1] == []


def test_questions_cover_most_topics_and_no_topic_dominates(items):
    covered = {t for item in items for t in item["topics"]}
    assert len(covered) >= 65, f"{len(covered)} of {len(reference_topics())} topics covered"
    first = Counter(item["topics"][0] for item in items)
    assert max(first.values()) <= 5, first.most_common(3)


def test_split_is_about_half_and_follows_the_fixed_rule(items):
    splits = Counter(item["split"] for item in items)
    assert splits["dev"] > 0 and splits["test"] > 0
    assert abs(splits["dev"] - splits["test"]) <= 1, splits
    order = list(range(len(items)))
    random.Random(SPLIT_SEED).shuffle(order)
    dev = set(order[: len(items) // 2])
    expected = ["dev" if i in dev else "test" for i in range(len(items))]
    assert [item["split"] for item in items] == expected, "the split was changed after the fact"


def test_reference_answers_belong_to_test_questions(items):
    answers = _load("rag_answers.json")
    assert len(answers) == 20
    split_of = {item["q"]: item["split"] for item in items}
    assert len({a["q"] for a in answers}) == len(answers), "no question twice"
    for a in answers:
        assert set(a) == {"q", "must_mention"}
        assert split_of.get(a["q"]) == "test", f"not a test question: {a['q']!r}"
        must = a["must_mention"]
        assert isinstance(must, list) and 1 <= len(must) <= 2, a["q"]
        for m in must:
            assert isinstance(m, str) and 0 < len(m.strip()) <= 30, m
            assert m.lower() not in a["q"].lower(), f"{m!r} is given away by the question"


@pytest.mark.skipif(importlib.util.find_spec("llmlab.rag") is None,
                    reason="llmlab.rag is not on this branch")
def test_rag_questions_loader_reads_the_same_file(items):
    from llmlab import rag

    if not hasattr(rag, "questions"):
        pytest.skip("llmlab.rag has no questions() yet")
    loaded = rag.questions()
    assert [q["q"] for q in loaded] == [item["q"] for item in items]
    assert [list(q["topics"]) for q in loaded] == [item["topics"] for item in items]
    test = [item["q"] for item in items if item["split"] == "test"]
    assert [q["q"] for q in rag.questions("test")] == test
