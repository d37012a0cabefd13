"""A two-exercise toy assignment built in code, so the autograder's tests do not depend on course
content. `build(folder)` writes folder/toy/toy.ipynb in the same nbgrader layout as solutions/."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def _meta(grade_id: str, *, grade=False, solution=False, locked=False, points=0):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


ANSWERS = {
    "add": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n",
    "mean": ("import numpy as np\n\ndef mean(x):\n    ### BEGIN SOLUTION\n"
             "    return float(np.mean(np.asarray(x, dtype=float)))\n    ### END SOLUTION\n"),
}
VISIBLE = {
    "add": "assert add(1, 2) == 3, 'add must add two integers'\n",
    "mean": "assert abs(mean([1.0, 2.0, 3.0]) - 2.0) < 1e-12, 'mean of a short list'\n",
}
HIDDEN = {
    "add": "assert add(-1.5, 0.5) == -1.0, 'add must handle negative floats'\n",
    "mean": ("import warnings\nwarnings.warn('a harmless warning on stderr')\n"
             "assert abs(mean(np.ones(1000) * 1e8) - 1e8) < 1e-3, 'mean of large values'\n"),
}


def notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"},
                                # graded kernels refuse these imports (answers must be written)
                                "autograder": {"blocked_imports": ["llmlab.setup"]}})
    nb.cells.append(new_markdown_cell("# Toy assignment", id="title"))
    nb.cells.append(new_code_cell("import numpy as np", id="setup",
                                  metadata=_meta("setup", locked=True)))
    for ex in ("add", "mean"):
        nb.cells.append(new_markdown_cell(f"Write `{ex}`.", id=f"{ex}-task",
                                          metadata=_meta(f"{ex}_task", locked=True)))
        nb.cells.append(new_code_cell(ANSWERS[ex], id=f"{ex}-answer",
                                      metadata=_meta(f"{ex}_answer", solution=True)))
        nb.cells.append(new_code_cell(VISIBLE[ex], id=f"{ex}-visible",
                                      metadata=_meta(f"{ex}_visible", grade=True, locked=True,
                                                     points=1)))
        hidden = (f"# Hidden tests for {ex} run when your notebook is graded.\n"
                  f"### BEGIN HIDDEN TESTS\n{HIDDEN[ex]}### END HIDDEN TESTS\n")
        nb.cells.append(new_code_cell(hidden, id=f"{ex}-hidden",
                                      metadata=_meta(f"{ex}_hidden", grade=True, locked=True,
                                                     points=2)))
    return nb


def build(folder: Path) -> Path:
    path = folder / "toy" / "toy.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook(), path)
    return path
