"""Reading submissions and rebuilding them around the instructor's cells.

A submission is untrusted: it may not be JSON, may not be a notebook, may have lost or edited test
cells, renamed cells, duplicated answers. `merge` rebuilds a gradable notebook from the source
(solutions) notebook: every locked and test cell comes from the source, every answer cell from the
submission (matched by nbgrader `grade_id`), and the student's own extra cells stay where they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

#: Larger files are refused before parsing (a notebook of exercises is well under 1 MB).
MAX_NOTEBOOK_BYTES = 20_000_000
HIDDEN_SUFFIX = "_hidden"


class InvalidNotebook(Exception):
    """The file cannot be graded as a notebook; the message is the one-line reason."""


def read_notebook(path: Path) -> NotebookNode:
    """Read and validate a notebook, raising InvalidNotebook with a one-line reason."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InvalidNotebook(f"cannot read {path.name}: {err.strerror}") from None
    if size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"{path.name} is {size / 1e6:.0f} MB, over the "
                              f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB limit")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidNotebook(f"{path.name} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise InvalidNotebook(f"{path.name} is not valid JSON (line {err.lineno}: {err.msg})") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise InvalidNotebook(f"{path.name} is JSON but not a notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise InvalidNotebook(f"{path.name} is not an nbformat 4 notebook")
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several unrelated types for malformed input
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidNotebook(f"{path.name} is not a valid notebook: {first_line[:200]}") from None
    return nb


def nbgrader_meta(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def is_test_cell(cell: NotebookNode) -> bool:
    """A graded code cell (visible or hidden tests)."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_hidden_test(cell: NotebookNode) -> bool:
    return is_test_cell(cell) and (grade_id(cell) or "").endswith(HIDDEN_SUFFIX)


def is_answer_cell(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_instructor_cell(cell: NotebookNode) -> bool:
    """Cells the student may not change: locked cells and test cells."""
    meta = nbgrader_meta(cell)
    return not meta.get("solution") and bool(meta.get("locked") or meta.get("grade"))


def points(cell: NotebookNode) -> float:
    return float(nbgrader_meta(cell).get("points", 0) or 0)


@dataclass
class Merged:
    """A notebook ready to execute, and what had to be repaired to make it."""

    nb: NotebookNode
    restored: list[str] = field(default_factory=list)  # instructor cells put back
    missing_answers: list[str] = field(default_factory=list)


def merge(submission: NotebookNode, source: NotebookNode, release: NotebookNode) -> Merged:
    """Rebuild `submission` around the instructor cells of `source`.

    `release` is the student version of `source`: a submitted instructor cell that differs from its
    released (and its source) text was edited, or was deleted when absent; either way the source's
    cell is used and the grade_id is listed in `restored`. Answer cells missing from the submission
    fall back to the released stub. The student's extra cells follow the cell they followed.
    """
    released = {grade_id(c): c for c in release.cells if grade_id(c)}
    source_ids = {grade_id(c) for c in source.cells if grade_id(c)}
    answers: dict[str, NotebookNode] = {}
    seen_instructor: dict[str, NotebookNode] = {}
    extras_after: dict[str | None, list[NotebookNode]] = {}
    anchor: str | None = None  # grade_id of the last matched cell, None before the first
    for cell in submission.cells:
        gid = grade_id(cell)
        if gid in source_ids and gid not in answers and gid not in seen_instructor:
            if gid in released and is_answer_cell(released[gid]):
                answers[gid] = cell
            else:
                seen_instructor[gid] = cell
            anchor = gid
        else:
            extras_after.setdefault(anchor, []).append(_as_plain_cell(cell))

    merged = Merged(nb=nbformat.v4.new_notebook(metadata=source.metadata))
    cells = merged.nb.cells
    cells.extend(extras_after.pop(None, []))
    for src in source.cells:
        gid = grade_id(src)
        if gid is not None and gid in answers:
            cells.append(_answer_cell(answers[gid], src))
        elif gid is not None and is_answer_cell(src):
            merged.missing_answers.append(gid)
            cells.append(_answer_cell(released.get(gid, src), src))
        elif gid is None:
            continue  # the student's own copy of a free cell (title, notes) is among the extras
        else:
            cells.append(src.copy())
            if is_instructor_cell(src):
                sub = seen_instructor.get(gid)
                if sub is None or sub.get("source", "") not in (released.get(gid, src).source,
                                                                 src.source):
                    merged.restored.append(gid)
        cells.extend(extras_after.pop(gid, []))
    for rest in extras_after.values():  # anchors that only existed in the submission
        cells.extend(rest)
    _unique_ids(merged.nb)
    return merged


def _answer_cell(submitted: NotebookNode, src: NotebookNode) -> NotebookNode:
    cell = nbformat.v4.new_code_cell(source=submitted.get("source", ""))
    if submitted.get("cell_type") != "code":  # an answer turned into markdown is not code
        cell = nbformat.v4.new_markdown_cell(source=submitted.get("source", ""))
    cell.metadata["nbgrader"] = dict(nbgrader_meta(src))
    cell.id = src.get("id", cell.id)
    return cell


def _as_plain_cell(cell: NotebookNode) -> NotebookNode:
    """A student's own cell, stripped of any nbgrader metadata it claims."""
    kind = cell.get("cell_type")
    source = cell.get("source", "")
    if kind == "code":
        new = nbformat.v4.new_code_cell(source=source)
    elif kind == "markdown":
        new = nbformat.v4.new_markdown_cell(source=source)
    else:
        new = nbformat.v4.new_raw_cell(source=source)
    if isinstance(cell.get("id"), str):
        new.id = cell["id"]
    return new


def _unique_ids(nb: NotebookNode) -> None:
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        if cell.get("id") in seen or not cell.get("id"):
            cell.id = f"student-cell-{index}"
        seen.add(cell.id)
