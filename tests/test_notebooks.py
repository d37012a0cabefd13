"""Every module's notebooks: conventions, generated student versions, grading, mutants, lectures."""

import ast
import csv
import json
import os
import re
import subprocess
import symtable
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ASSIGNMENTS_DIR, assignments, course_dir
from autograder.grading import Limits, grade
from autograder.lectures import execute, lectures
from autograder.notebooks import grade_id, is_answer_cell, is_test_cell, points
from llmlab import PROJECT_ROOT

ASSIGNMENTS = assignments()
LECTURES = lectures()
MUTANTS_DIR = PROJECT_ROOT / "tests" / "mutants"
TIMINGS = PROJECT_ROOT / "build" / "timings.json"
GRADE_ID = re.compile(r"^[a-z0-9_]+$")


def _ids(items):
    return [getattr(i, "name", None) or Path(i).stem for i in items]


def _exercises(nb) -> list[str]:
    return [grade_id(c)[: -len("_answer")] for c in nb.cells if is_answer_cell(c)]


def test_every_module_has_its_three_notebooks():
    names = [a.name for a in ASSIGNMENTS]
    assert names, "no assignments found in solutions/"
    assert [p.stem for p in LECTURES] == names
    for name in names:
        assert (ASSIGNMENTS_DIR / name / f"{name}.ipynb").exists(), f"run make assignments ({name})"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_solution_follows_the_authoring_conventions(assignment):
    raw = json.loads(assignment.source.read_text(encoding="utf-8"))
    assert (raw["nbformat"], raw["nbformat_minor"]) >= (4, 5)
    nb = nbformat.read(assignment.source, as_version=4)
    assert all(c.get("id") for c in nb.cells), "every cell has a stable id"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "no outputs"
    ids = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert len(ids) == len(set(ids)), "grade_ids are unique"
    exercises = _exercises(nb)
    assert exercises, "at least one exercise"
    for ex in exercises:
        for suffix in ("_task", "_answer", "_visible", "_hidden"):
            assert f"{ex}{suffix}" in ids, f"{ex} has a {suffix} cell"
        assert GRADE_ID.match(ex)
    for cell in nb.cells:
        gid = grade_id(cell) or ""
        if is_test_cell(cell):
            assert points(cell) > 0, f"{gid} carries points"
            hidden = "BEGIN HIDDEN TESTS" in cell.source
            assert hidden == gid.endswith("_hidden"), f"{gid}: hidden tests only in _hidden cells"
            if hidden:
                assert cell.source.startswith(f"# Hidden tests for {gid[:-7]} run when"), gid
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Assert):
                    assert node.msg is not None, f"{gid}: every assert names the property"
            assert "print(" not in cell.source, f"{gid}: tests never print"
        if is_answer_cell(cell):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_committed_student_version_is_a_fresh_generation(assignment, tmp_path):
    fresh = course_dir(assignment, cache=tmp_path).release
    committed = ASSIGNMENTS_DIR / assignment.name / f"{assignment.notebook}.ipynb"
    assert committed.read_bytes() == fresh.read_bytes(), "run make assignments"
    text = committed.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_solution_scores_full_marks(assignment):
    result = grade(assignment.source, Limits(), assignment.name).result
    _record_timing(f"grade {assignment.name}", result.seconds)
    assert result.state == "graded", result.summary()
    assert result.score == result.max_score > 0, result.summary()
    assert "tests_restored" not in result.flags


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_released_notebook_scores_zero_without_crashing(assignment, tmp_path):
    released = ASSIGNMENTS_DIR / assignment.name / f"{assignment.notebook}.ipynb"
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(released),
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["status"] == "fail" and data["max_score"] > 0
    assert sum(t["score"] for t in data["tests"]) == 0
    assert all(t["message"] for t in data["tests"])


def _mutants(assignment) -> list[Path]:
    return sorted((MUTANTS_DIR / assignment.name).glob("*.py"))


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_every_exercise_has_honest_mutants(assignment):
    exercises = _exercises(nbformat.read(assignment.source, as_version=4))
    by_exercise: dict[str, list[str]] = {ex: [] for ex in exercises}
    for path in _mutants(assignment):
        ex, sep, _ = path.stem.partition("__")
        assert sep and ex in by_exercise, f"{path.name} names no exercise of {assignment.name}"
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first in ("# expect: passes visible", "# expect: fails visible"), path.name
        by_exercise[ex].append(first)
    for ex, expects in by_exercise.items():
        assert len(expects) >= 2, f"{ex} has at least two mutants"
        assert "# expect: passes visible" in expects, f"a mutant of {ex} passes visible tests"


def _names(code: str) -> tuple[set[str] | None, set[str] | None]:
    """The global names `code` binds (imports aside: every import of a module binds the same
    object) and the global names it reads, at top level or inside its functions; (None, None) if
    it does not parse (a cell magic, say)."""
    try:
        table = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:
        return None, None
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() and not s.is_imported()}
    read = set()
    todo = [table]
    while todo:
        t = todo.pop()
        todo += t.get_children()
        read |= {s.get_name() for s in t.get_symbols()
                 if s.is_referenced() and (t is table or s.is_global())}
    return bound, read


def _mutant_batches(source, mutants: list[Path]) -> list[dict[str, Path]]:
    """Mutants packed into notebooks, at most one per exercise in each, and never two of
    exercises that touch each other's names (a top-level name of one exercise's cells or mutants
    that the other reads without defining it, or an answer name both define): each mutated
    exercise is then graded exactly as if it were the notebook's only wrong answer. An exercise
    whose cells do not all parse shares with none."""
    answer: dict[str, set] = {}  # names an exercise's answer cell or mutants define
    own: dict[str, set] = {}  # names any of its cells or mutants define
    read: dict[str, set] = {}
    codes = [(grade_id(c)[: -len("_answer")], c.source, True) for c in source.cells
             if is_answer_cell(c)]
    codes += [(grade_id(c).rsplit("_", 1)[0], c.source, False) for c in source.cells
              if is_test_cell(c)]
    codes += [(p.stem.split("__")[0], p.read_text(encoding="utf-8"), True) for p in mutants]
    broken = set()
    for ex, code, is_answer in codes:
        d, r = _names(code)
        if d is None:
            broken.add(ex)
            continue
        own.setdefault(ex, set()).update(d)
        answer.setdefault(ex, set()).update(d if is_answer else ())
        read.setdefault(ex, set()).update(r)

    def independent(a: str, b: str) -> bool:
        if a == b or {a, b} & broken:
            return False
        return not (answer[a] & answer[b] or own[a] & (read[b] - own[b])
                    or own[b] & (read[a] - own[a]))

    batches: list[dict[str, Path]] = []
    alone = os.environ.get("LLMLAB_MUTANTS_ALONE") == "1"  # one mutant per notebook, as before
    for path in mutants:
        ex = path.stem.split("__")[0]
        for batch in [] if alone else batches:
            if all(independent(ex, other) for other in batch):
                batch[ex] = path
                break
        else:
            batches.append({ex: path})
    return batches


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=_ids(ASSIGNMENTS))
def test_mutants_lose_hidden_points(assignment, tmp_path):
    """Every mutant, with every answer it does not replace correct, graded as a class in one
    batch. Mutants of independent exercises share a notebook (`_mutant_batches`), so a module's
    30 mutants take a handful of kernels instead of 30."""
    source = nbformat.read(assignment.source, as_version=4)
    release = nbformat.read(ASSIGNMENTS_DIR / assignment.name / f"{assignment.notebook}.ipynb",
                            as_version=4)
    answers = {grade_id(c): c.source for c in source.cells if is_answer_cell(c)}
    folder = tmp_path / "submissions"
    folder.mkdir()
    batches = _mutant_batches(source, _mutants(assignment))
    for i, batch in enumerate(batches):
        nb = release.copy()
        nb.cells = [c.copy() for c in release.cells]
        for cell in nb.cells:
            if grade_id(cell) in answers:
                cell.source = answers[grade_id(cell)]
            ex = grade_id(cell)[: -len("_answer")] if grade_id(cell) in answers else None
            if ex in batch:
                cell.source = batch[ex].read_text(encoding="utf-8")
        nbformat.write(nb, folder / f"batch{i:02d}.ipynb")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade-class", str(folder),
                           "--assignment", assignment.name, "--out", str(out), "-j", "2",
                           "--no-feedback"],  # scores only: feedback pages are tested elsewhere
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (out / "grades.csv").open(encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    maxima = {grade_id(c): points(c) for c in source.cells if is_test_cell(c)}
    for i, batch in enumerate(batches):
        row = rows[f"batch{i:02d}"]
        names = ", ".join(p.stem for p in batch.values())
        assert row["status"] == "graded", f"{names}: {row['status']} {row['reason']}"
        for ex, path in batch.items():
            passes_visible = "passes visible" in path.read_text().splitlines()[0]
            assert float(row[f"{ex}_hidden"]) == 0, \
                f"{path.stem} must lose the hidden points of {ex}"
            visible = float(row[f"{ex}_visible"]) == maxima[f"{ex}_visible"]
            assert visible == passes_visible, \
                f"{path.stem}: visible tests {'pass' if visible else 'fail'}"
        others = [k for k in maxima if k.rsplit("_", 1)[0] not in batch]
        broken = [k for k in others if float(row[k]) != maxima[k]]
        assert not broken, f"{names} break other exercises: {broken}"


def _blocked(assignment) -> list[str]:
    nb = nbformat.read(assignment.source, as_version=4)
    return list(nb.metadata.get("autograder", {}).get("blocked_imports", []))


BLOCKING = [a for a in ASSIGNMENTS if _blocked(a)]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", BLOCKING, ids=_ids(BLOCKING))
def test_answers_cannot_be_imported_from_llmlab(assignment, tmp_path):
    """An answer that imports the course library's implementation scores nothing for its exercise.

    Each blocked module imports fine outside the grader (so the block is what stops it); inside,
    the first exercise's answer becomes `import <module>` followed by the reference answer.
    """
    source = nbformat.read(assignment.source, as_version=4)
    release = nbformat.read(ASSIGNMENTS_DIR / assignment.name / f"{assignment.notebook}.ipynb",
                            as_version=4)
    answers = {grade_id(c): c.source for c in source.cells if is_answer_cell(c)}
    first = _exercises(source)[0]
    maxima = {grade_id(c): points(c) for c in source.cells if is_test_cell(c)}
    for module in _blocked(assignment):
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=120)
        nb = release.copy()
        nb.cells = [c.copy() for c in release.cells]
        for cell in nb.cells:
            gid = grade_id(cell)
            if gid in answers:
                cell.source = answers[gid]
            if gid == f"{first}_answer":
                cell.source = f"import {module}\n\n" + answers[gid]
        path = tmp_path / f"imports_{module.replace('.', '_')}.ipynb"
        nbformat.write(nb, path)
        result = grade(path, Limits(), assignment.name).result
        assert result.state == "graded", result.summary()
        scores = {t.name: t.score for t in result.tests}
        assert scores[f"{first}_visible"] == scores[f"{first}_hidden"] == 0, \
            f"importing {module} must fail the exercise"
        others = [k for k in maxima if not k.startswith(f"{first}_")]
        assert all(scores[k] == maxima[k] for k in others), "other exercises keep their points"
        messages = {t.name: t.message for t in result.tests}
        assert f"importing {module} is disabled" in messages[f"{first}_visible"], \
            "the reason names the blocked import"


@pytest.mark.parametrize("lecture", LECTURES, ids=_ids(LECTURES))
def test_lecture_is_committed_from_a_clean_run(lecture):
    nb = nbformat.read(lecture, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "outputs come from one top-to-bottom run (make lectures)"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "中文" in text, "a key-terms table with the Chinese terms"


@pytest.mark.slow
@pytest.mark.parametrize("lecture", LECTURES, ids=_ids(LECTURES))
def test_lecture_runs_top_to_bottom(lecture):
    nb, seconds = execute(lecture)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    stderr = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    _record_timing(f"lecture {lecture.stem}", seconds)
    assert not errors, errors[0]
    assert not stderr, stderr[0]


def _record_timing(key: str, seconds: float) -> None:
    """Seconds per notebook, for the notes and budgets (benchmarks, not timed assertions)."""
    TIMINGS.parent.mkdir(exist_ok=True)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[key] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
