"""Prompting, measured: templates, chat truncation, example selection, JSON output, voting,
injection checks, and ways to classify text with the course's local chat model.

The labelled sets written for the course live in `llmlab/datasets/` (see its README):

    >>> from llmlab.prompting import load_labelled, split_dev_test
    >>> dev, test = split_dev_test(load_labelled("sentiment"))
    >>> len(dev), len(test)
    (74, 74)
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

#: The folder of the data sets written for module 10.
DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
#: The label words of the sentiment set and of the topic set, in a fixed order.
SENTIMENT_LABELS: tuple[str, ...] = ("positive", "negative")
TOPIC_LABELS: tuple[str, ...] = ("sports", "technology", "food", "weather")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def load_labelled(name: str | Path) -> list[dict]:
    """A labelled set as a list of `{"text": str, "label": str}` dicts.

    `name` is one of the course's sets (`"sentiment"`, `"topics"`) or the path of a JSON file
    holding a list in that shape. Raises ValueError on anything else.
    """
    path = Path(name)
    if path.suffix != ".json":
        path = DATASETS_DIR / f"{name}.json"
        if not path.exists():
            raise ValueError(f"no data set called {name!r}: use 'sentiment', 'topics' or the "
                             "path of a .json file")
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path} must hold a non-empty JSON list of {{'text', 'label'}} objects")
    for i, item in enumerate(items):
        if (not isinstance(item, dict) or not isinstance(item.get("text"), str)
                or not isinstance(item.get("label"), str)):
            raise ValueError(f"item {i} of {path} must be an object with a string 'text' and "
                             "a string 'label'")
    return [{"text": item["text"], "label": item["label"]} for item in items]


def split_dev_test(items: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split a labelled set once into a development half and a test half, stratified by label.

    The items of each label are shuffled with `random.Random(seed)` (the same on every machine
    and Python version) and halved; when a label has an odd count, the extra item goes to the
    development half. Both halves keep the items in their original order.
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_label[item["label"]].append(index)
    rng = random.Random(seed)
    dev_indices: set[int] = set()
    for label in sorted(by_label):
        indices = by_label[label][:]
        rng.shuffle(indices)
        dev_indices.update(indices[: (len(indices) + 1) // 2])
    dev = [item for i, item in enumerate(items) if i in dev_indices]
    test = [item for i, item in enumerate(items) if i not in dev_indices]
    return dev, test
