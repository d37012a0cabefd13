"""Throughput: `bench --assignment NAME -n N` times plain nbgrader and `grade-class` on one batch.

The batch is built from the assignment's own notebooks: a third the solution (correct), a third
the released notebook (unanswered), a third wrong (every answer correct but one, taken from a
mutant in `tests/mutants/NAME`, or, without mutants, the first answer replaced by a wrong one).
In one run, on the same machine and load:
- plain nbgrader: one `nbgrader autograde NAME` call (serial) in a temporary course folder;
- `grade-class` (`-j JOBS`, as an instructor runs it, a process of its own);
- `grade` of each distinct notebook alone, in this process: every score of grade-class must agree.
Prints one JSON line: both wall times, their ratio, whether the scores agree, the time the
submissions' own cells took and the grader's overhead beyond it, and the load average.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder.course import SOLUTIONS_DIR, Assignment, course_dir, find_assignment, write_config
from autograder.grading import Limits, grade
from autograder.notebooks import grade_id, is_answer_cell, is_test_cell
from llmlab import PROJECT_ROOT

MUTANTS_DIR = PROJECT_ROOT / "tests" / "mutants"
#: the answer a wrong submission gets when the assignment has no mutants
WRONG_ANSWER = "raise ValueError('a wrong answer')\n"


def build_batch(assignment: Assignment, n: int, folder: Path,
                mutants_dir: Path = MUTANTS_DIR) -> list[str]:
    """Write `n` submissions to `folder` (correct, release, wrong, in turn); return the names."""
    course = course_dir(assignment)
    source = nbformat.read(course.source, as_version=4)
    release = nbformat.read(course.release, as_version=4)
    answers = {grade_id(c): c.source for c in source.cells if is_answer_cell(c)}
    mutants = sorted((mutants_dir / assignment.name).glob("*.py"))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        kind = ("correct", "release", "wrong")[i % 3]
        nb = _copy(release)
        if kind != "release":
            for cell in nb.cells:
                if grade_id(cell) in answers:
                    cell.source = answers[grade_id(cell)]
        if kind == "wrong":
            if mutants:
                mutant = mutants[(i // 3) % len(mutants)]
                target, label = f"{mutant.stem.split('__')[0]}_answer", mutant.stem
                text = mutant.read_text(encoding="utf-8")
            else:
                target = next(grade_id(c) for c in nb.cells if is_answer_cell(c))
                label, text = target, WRONG_ANSWER
            for cell in nb.cells:
                if grade_id(cell) == target:
                    cell.source = text
            kind = f"wrong-{label}"
        name = f"s{i:03d}-{kind}"[:80]
        nbformat.write(nb, folder / f"{name}.ipynb")
        names.append(name)
    return names


def _copy(nb: NotebookNode) -> NotebookNode:
    copy = nb.copy()
    copy.cells = [c.copy() for c in nb.cells]
    return copy


def time_nbgrader(assignment: Assignment, subs: Path, names: list[str], work: Path) -> tuple[
        float, dict[str, dict[str, float]]]:
    """Plain `nbgrader autograde` (one call, serial) in a course folder of its own: its wall
    time and each student's scores by test."""
    course = course_dir(assignment)
    root = work / "nbgrader"
    shutil.copytree(course.root / "source", root / "source")
    shutil.copyfile(course.db, root / "gradebook.db")
    write_config(root)
    for name in names:
        target = root / "submitted" / name / assignment.name / f"{assignment.notebook}.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copyfile(subs / f"{name}.ipynb", target)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment.name],
                          cwd=root, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError("nbgrader autograde failed:\n" + proc.stderr[-3000:])
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[str, dict[str, float]] = {}
    tests = [grade_id(c) for c in nbformat.read(course.source, as_version=4).cells
             if is_test_cell(c)]
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for name in names:
            try:
                scores[name] = {t: float(gb.find_grade(t, assignment.notebook, assignment.name,
                                                       name).score) for t in tests}
            except MissingEntry:
                scores[name] = {}
    return seconds, scores


def time_grade_class(assignment: Assignment, subs: Path, out: Path, jobs: int, feedback: bool,
                     solutions_dir: Path) -> tuple[float, dict[str, dict], str]:
    """`grade-class` as an instructor runs it: wall time, each student's record, its summary."""
    cmd = [sys.executable, "-m", "autograder", "grade-class", str(subs), "--assignment",
           assignment.name, "--out", str(out), "-j", str(jobs), "--solutions", str(solutions_dir)]
    if not feedback:
        cmd.append("--no-feedback")
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError("grade-class failed:\n" + proc.stderr[-3000:])
    records = {p.name[: -len(".record.json")]: json.loads(p.read_text(encoding="utf-8"))["result"]
               for p in (out / "results").glob("*.record.json")}
    return seconds, records, proc.stdout


def alone(assignment: Assignment, subs: Path, names: list[str],
          solutions_dir: Path) -> dict[str, tuple[str, dict[str, float]]]:
    """`grade` of each distinct notebook alone (identical files are graded once)."""
    by_content: dict[str, tuple[str, dict[str, float]]] = {}
    found = {}
    for name in names:
        path = subs / f"{name}.ipynb"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in by_content:
            result = grade(path, Limits(), assignment.name, solutions_dir).result
            by_content[digest] = (result.state, {t.name: t.score for t in result.tests})
        found[name] = by_content[digest]
    return found


def bench(name: str, n: int, jobs: int = 2, feedback: bool = False,
          solutions_dir: Path = SOLUTIONS_DIR, keep: Path | None = None) -> dict:
    assignment = find_assignment(name, solutions_dir)
    course_dir(assignment)  # built (and cached) before anything is timed
    work = Path(tempfile.mkdtemp(prefix="ag-bench-")) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        subs = work / "submissions"
        names = build_batch(assignment, n, subs)
        load_before = os.getloadavg()
        nbg_seconds, nbg_scores = time_nbgrader(assignment, subs, names, work)
        gc_seconds, records, summary = time_grade_class(assignment, subs, work / "graded", jobs,
                                                        feedback, solutions_dir)
        load_after = os.getloadavg()
        expected = alone(assignment, subs, names, solutions_dir)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    disagree = []
    for student in names:
        record = records.get(student, {})
        got = (record.get("state"), {t["name"]: t["score"] for t in record.get("tests", [])})
        if got != expected[student]:
            disagree.append(student)
    nbg_disagree = [s for s in names if nbg_scores.get(s) != expected[s][1]]
    cells = sum(r.get("cell_seconds", 0.0) for r in records.values())
    with_states: dict[str, int] = {}
    for record in records.values():
        with_states[record["state"]] = with_states.get(record["state"], 0) + 1
    return {
        "assignment": name, "n": n, "jobs": jobs, "feedback": feedback,
        "nbgrader_seconds": round(nbg_seconds, 2),
        "grade_class_seconds": round(gc_seconds, 2),
        "ratio": round(gc_seconds / nbg_seconds, 3),
        "scores_agree": not disagree, "disagree": disagree,
        "states": with_states,
        "cell_seconds": round(cells, 2),
        "overhead_seconds": round(gc_seconds - cells / max(1, jobs), 2),
        # informational: where plain nbgrader's own scores differ from `grade` (its known gaps)
        "nbgrader_differs": nbg_disagree,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "summary": [line for line in summary.splitlines() if line.startswith("Time:")],
    }

