"""Running lectures top to bottom in a fresh kernel (`make lectures`, and the test suite)."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from llmlab import PROJECT_ROOT

COURSE_DIR = PROJECT_ROOT / "course"
CELL_TIMEOUT = 600


def lectures() -> list[Path]:
    return sorted(COURSE_DIR.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    """Execute a lecture in a fresh kernel in its own folder; return it and the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()
    return nb, time.monotonic() - started


def run_lectures(paths: list[Path] | None = None, only: str | None = None) -> None:
    """Execute `paths` (default: every lecture, or the one whose name starts with `only`)."""
    if not paths:
        paths = [p for p in lectures() if only is None or p.name.startswith(only)]
        if not paths:
            raise ValueError(f"no lecture in {COURSE_DIR} starts with {only!r}")
    for path in paths:
        nb, seconds = execute(path)
        nbformat.write(nb, path)
        print(f"{path.name}: ran in {seconds:.1f} s, outputs saved")
