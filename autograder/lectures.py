"""Running lectures top to bottom in a fresh kernel (`make lectures`, and the test suite)."""

from __future__ import annotations

import json
import re
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
    prune_widget_state(nb)
    return nb, time.monotonic() - started


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def prune_widget_state(nb: nbformat.NotebookNode) -> int:
    """Keep only the saved widget models that a displayed output shows or that those refer to
    (`IPY_MODEL_<id>`): models a cell created and dropped (a progress bar that `leave=False`
    cleared) would otherwise stay in the file. Returns how many were removed."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state")
    if not state:
        return 0
    todo = [o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
            if WIDGET_VIEW in o.get("data", {})]
    kept: set[str] = set()
    while todo:
        model = todo.pop()
        if model in kept or model not in state:
            continue
        kept.add(model)
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model]))
    dropped = [m for m in state if m not in kept]
    for model in dropped:
        del state[model]
    return len(dropped)


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
