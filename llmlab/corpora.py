"""Offline text collections with known topics, built from what is installed.

`package_docstrings` gathers the docstrings of the public functions and classes of installed
Python packages and labels each text with the package it came from. The labels are known but
the texts do not carry them, so the collection suits clustering ("group the texts by topic
without labels, then compare with the held-back topics"), classification and word-vector
training, with no download.

The docstrings change a little between package versions, so code that uses the collection
should check properties (sizes, label sets, scores), never exact text.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import warnings
from collections.abc import Sequence
from types import ModuleType

import numpy as np

#: Packages collected when none are named: four libraries this course uses, four topics.
DEFAULT_PACKAGES: tuple[str, ...] = ("numpy", "torch", "sklearn", "matplotlib")

#: The public modules read for each known package. A package not listed here is read through
#: its top-level module only. Walking every submodule instead would be slow and would run
#: import-time code the collection does not need (test suites, plugins, optional backends).
PACKAGE_MODULES: dict[str, tuple[str, ...]] = {
    "numpy": (
        "numpy",
        "numpy.fft",
        "numpy.linalg",
        "numpy.ma",
        "numpy.polynomial",
        "numpy.random",
    ),
    "torch": (
        "torch",
        "torch.autograd",
        "torch.distributions",
        "torch.fft",
        "torch.linalg",
        "torch.nn",
        "torch.nn.functional",
        "torch.optim",
        "torch.utils.data",
    ),
    "sklearn": (
        "sklearn.cluster",
        "sklearn.datasets",
        "sklearn.decomposition",
        "sklearn.ensemble",
        "sklearn.feature_extraction.text",
        "sklearn.impute",
        "sklearn.linear_model",
        "sklearn.manifold",
        "sklearn.metrics",
        "sklearn.mixture",
        "sklearn.model_selection",
        "sklearn.naive_bayes",
        "sklearn.neighbors",
        "sklearn.pipeline",
        "sklearn.preprocessing",
        "sklearn.svm",
        "sklearn.tree",
    ),
    "matplotlib": (
        "matplotlib",
        "matplotlib.animation",
        "matplotlib.artist",
        "matplotlib.axes",
        "matplotlib.cm",
        "matplotlib.collections",
        "matplotlib.colorbar",
        "matplotlib.colors",
        "matplotlib.dates",
        "matplotlib.figure",
        "matplotlib.image",
        "matplotlib.legend",
        "matplotlib.lines",
        "matplotlib.patches",
        "matplotlib.pyplot",
        "matplotlib.scale",
        "matplotlib.text",
        "matplotlib.ticker",
        "matplotlib.transforms",
    ),
    "gymnasium": (
        "gymnasium",
        "gymnasium.envs.classic_control",
        "gymnasium.envs.toy_text",
        "gymnasium.spaces",
        "gymnasium.utils",
        "gymnasium.vector",
        "gymnasium.wrappers",
    ),
}


def package_docstrings(
    packages: Sequence[str] = DEFAULT_PACKAGES,
    *,
    min_chars: int = 500,
    max_per_package: int | None = 150,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Docstrings of installed packages' public functions and classes, labelled by package.

    For every package, the modules in `PACKAGE_MODULES` (or only the top-level module, for a
    package not listed there) are imported in sorted order; import-time warnings and output are
    suppressed, and a submodule that fails to import is skipped. From each module, the public
    names (its ``__all__``, or else every name without a leading underscore), in sorted order,
    that are classes or callables defined in the package itself (``__module__`` starts with the
    package name) contribute their docstring, cleaned with `inspect.cleandoc`. Objects seen
    before (re-exports), texts seen before (shared docstrings, in any package) and texts shorter
    than `min_chars` are skipped. If a package then has more than `max_per_package` texts, that
    many are drawn without replacement by ``numpy.random.default_rng([seed, i])``, where ``i``
    is the package's position in `packages`, and kept in their sorted order.

    The result depends only on the arguments and the installed package versions: it needs no
    network and does not use numpy's global random state.

    Args:
        packages: import names of the packages (``"sklearn"``, not ``"scikit-learn"``); each
            becomes one label. Must be non-empty and without repeats.
        min_chars: shortest docstring kept, in characters after cleaning (``>= 1``).
        max_per_package: most texts kept per package (``>= 1``), or ``None`` for all of them.
        seed: seed of the draw that caps a package at `max_per_package` texts.

    Returns:
        ``(texts, labels)``: two lists of the same length; ``labels[i]`` is the package that
        ``texts[i]`` was taken from. The texts of a package are contiguous, packages in the
        order given.

    Raises:
        ValueError: `packages` is empty or repeats a name, `min_chars` or `max_per_package`
            is below 1, or a package is not installed.
    """
    packages = list(packages)
    if not packages or len(set(packages)) != len(packages):
        raise ValueError(f"packages must be non-empty and without repeats, got {packages}")
    if min_chars < 1:
        raise ValueError(f"min_chars must be >= 1, got {min_chars}")
    if max_per_package is not None and max_per_package < 1:
        raise ValueError(f"max_per_package must be >= 1 or None, got {max_per_package}")

    texts: list[str] = []
    labels: list[str] = []
    seen_texts: set[str] = set()
    for position, package in enumerate(packages):
        found = _docstrings_of(package, min_chars, seen_texts)
        if max_per_package is not None and len(found) > max_per_package:
            rng = np.random.default_rng([seed, position])
            keep = np.sort(rng.choice(len(found), size=max_per_package, replace=False))
            found = [found[i] for i in keep]
        texts.extend(found)
        labels.extend([package] * len(found))
    return texts, labels


def _docstrings_of(package: str, min_chars: int, seen_texts: set[str]) -> list[str]:
    """Cleaned docstrings of one package, in traversal order; adds them to `seen_texts`."""
    found: list[str] = []
    seen_objects: set[int] = set()
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"package {package!r} is not installed")
    for module_name in sorted(PACKAGE_MODULES.get(package, (package,))):
        module = _quiet_import(module_name)
        if module is None:
            continue
        members = vars(module)  # not getattr: that would trigger lazily imported submodules
        for name in sorted(_public_names(module)):
            obj = members.get(name)
            if not (inspect.isclass(obj) or callable(obj)) or id(obj) in seen_objects:
                continue
            owner = getattr(obj, "__module__", None)
            if not isinstance(owner, str) or owner.split(".")[0] != package:
                continue
            seen_objects.add(id(obj))
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            text = inspect.cleandoc(doc).strip()
            if len(text) >= min_chars and text not in seen_texts:
                seen_texts.add(text)
                found.append(text)
    return found


def _quiet_import(module_name: str) -> ModuleType | None:
    """Import a module with warnings and printed output suppressed; None if it fails."""
    sink = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                return importlib.import_module(module_name)
            except Exception:  # a broken optional submodule must not stop the collection
                return None


def _public_names(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = dir(module)
    return [n for n in names if isinstance(n, str) and not n.startswith("_")]
