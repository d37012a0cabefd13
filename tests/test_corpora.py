"""Unit tests of llmlab.corpora: docstrings of installed packages, labelled by package.

The docstrings change a little between package versions, so these tests check properties
(sizes, labels, determinism), never exact text.
"""

import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from llmlab.corpora import DEFAULT_PACKAGES, package_docstrings


@pytest.fixture(scope="module")
def default_collection():
    return package_docstrings()


def test_texts_and_labels_line_up(default_collection):
    texts, labels = default_collection
    assert isinstance(texts, list) and isinstance(labels, list)
    assert len(texts) == len(labels) > 0
    assert all(isinstance(t, str) for t in texts) and all(isinstance(x, str) for x in labels)


def test_label_set_and_order(default_collection):
    _, labels = default_collection
    assert set(labels) == set(DEFAULT_PACKAGES)
    # each package's texts are contiguous, packages in the order given
    order = [labels[0]] + [b for a, b in zip(labels, labels[1:], strict=False) if a != b]
    assert order == list(DEFAULT_PACKAGES)


def test_every_default_package_fills_its_quota(default_collection):
    _, labels = default_collection
    assert Counter(labels) == {package: 150 for package in DEFAULT_PACKAGES}


def test_texts_are_long_clean_and_unique(default_collection):
    texts, _ = default_collection
    assert all(len(t) >= 500 for t in texts)
    assert all(t == t.strip() for t in texts)
    assert len(set(texts)) == len(texts)


def test_same_arguments_same_collection(default_collection):
    assert package_docstrings() == default_collection


def test_other_seed_other_sample_same_sizes(default_collection):
    texts, labels = default_collection
    other_texts, other_labels = package_docstrings(seed=1)
    assert other_labels == labels
    assert set(other_texts) != set(texts)


def test_cap_and_minimum_length_are_respected():
    texts, labels = package_docstrings(("numpy", "matplotlib"), min_chars=1000, max_per_package=40)
    assert Counter(labels) == {"numpy": 40, "matplotlib": 40}
    assert all(len(t) >= 1000 for t in texts)


def test_uncapped_collection_contains_every_sample():
    everything, labels = package_docstrings(("numpy",), max_per_package=None)
    sample, _ = package_docstrings(("numpy",), max_per_package=25, seed=3)
    assert len(everything) > 25 and set(labels) == {"numpy"}
    assert set(sample) <= set(everything)
    # the sample keeps the traversal order
    positions = [everything.index(t) for t in sample]
    assert positions == sorted(positions)


def test_a_package_without_a_module_list_is_read_from_its_top_level():
    texts, labels = package_docstrings(("json",), min_chars=100, max_per_package=None)
    assert texts and set(labels) == {"json"}


def test_global_random_state_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    package_docstrings(("numpy",), max_per_package=10)
    assert np.array_equal(np.random.get_state()[1], before)


def test_a_warm_call_is_fast(default_collection):
    started = time.monotonic()
    package_docstrings()
    assert time.monotonic() - started < 5.0


def test_runs_with_the_network_switched_off():
    code = (
        "import socket\n"
        "class NoNetwork(socket.socket):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        raise OSError('network disabled for this test')\n"
        "socket.socket = NoNetwork\n"
        "socket.create_connection = NoNetwork\n"
        "from llmlab.corpora import package_docstrings\n"
        "texts, labels = package_docstrings(max_per_package=5)\n"
        "assert len(texts) == 20, len(texts)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == "", "collecting must not print warnings"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"packages": ()},
        {"packages": ("numpy", "numpy")},
        {"packages": ("no_such_package_xyz",)},
        {"min_chars": 0},
        {"max_per_package": 0},
    ],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        package_docstrings(**kwargs)
