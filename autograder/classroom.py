"""Grading a whole class: `grade-class SUBMISSIONS --assignment NAME --out DIR`.

SUBMISSIONS holds one entry per student: a notebook file (the student is its name without the
extension) or a folder (a cloned student repository; the student is the folder's name). Each
submission is graded in its own process (`python -m autograder grade`), so nothing a submission
does can stop the batch; the gradebook is written by this process alone, one submission at a time.

DIR becomes an nbgrader course folder:
    grades.csv                                  one row per student, one column per test
    results/<student>.json                      GitHub Classroom JSON
    results/<student>.record.json               status, flags, reason, tests (resume key)
    autograded/<student>/<assignment>/<nb>.ipynb
    feedback/<student>/<assignment>/<nb>.html   no hidden test code
    gradebook.db, source/, nbgrader_config.py   (formgrader works here)
Rerunning skips students whose submission has not changed since their record (unless --force).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from autograder.course import (
    SOLUTIONS_DIR,
    Assignment,
    CourseDir,
    course_dir,
    find_assignment,
    run_nbgrader,
    write_config,
)
from autograder.grading import Limits, zero_result
from autograder.notebooks import grade_id, is_test_cell
from autograder.results import GradeResult, number

IGNORED = {".git", ".github", ".ipynb_checkpoints", "__pycache__", ".DS_Store"}


@dataclass
class Submission:
    student: str
    path: Path | None  # None: nothing gradable was found
    problem: str = ""


def student_id(name: str) -> str:
    """A file-system- and nbgrader-safe student id."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "student"


def discover(folder: Path, assignment: Assignment) -> list[Submission]:
    """One Submission per entry of `folder`, in name order."""
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name in IGNORED or entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.append(Submission(student_id(entry.name), *_notebook_in(entry, assignment)))
        else:
            found.append(Submission(student_id(entry.stem), entry))
    seen: dict[str, int] = {}
    for sub in found:  # alice.ipynb and alice/ would collide
        seen[sub.student] = seen.get(sub.student, 0) + 1
        if seen[sub.student] > 1:
            sub.student = f"{sub.student}-{seen[sub.student]}"
    return found


def _notebook_in(repo: Path, assignment: Assignment) -> tuple[Path | None, str]:
    canonical = repo / "assignments" / assignment.name / f"{assignment.notebook}.ipynb"
    if canonical.exists():
        return canonical, ""
    notebooks = sorted(p for p in repo.rglob("*.ipynb") if not IGNORED & set(p.parts))
    named = [p for p in notebooks if p.stem == assignment.notebook]
    if named or len(notebooks) == 1:
        return (named or notebooks)[0], ""
    if not notebooks:
        return None, f"no notebook found in {repo.name}/"
    source_ids = {grade_id(c) for c in nbformat.read(assignment.source, as_version=4).cells}
    scored = []
    for p in notebooks:
        try:
            ids = {grade_id(c) for c in nbformat.read(p, as_version=4).cells}
        except Exception:
            continue
        scored.append((len(ids & source_ids - {None}), p))
    best = max(scored, default=(0, None), key=lambda t: t[0])
    if best[0] == 0:
        return None, f"no notebook in {repo.name}/ belongs to {assignment.name}"
    return best[1], ""


def _key(sub: Submission, course: CourseDir, limits: Limits) -> str:
    h = hashlib.sha256(course.digest.encode())
    h.update(json.dumps([limits.cell_timeout, limits.timeout, limits.memory_mb]).encode())
    if sub.path is not None and sub.path.is_file():
        h.update(sub.path.read_bytes())
    return h.hexdigest()


def grade_class(submissions: Path, assignment_name: str, out: Path, jobs: int = 2,
                limits: Limits | None = None, force: bool = False, progress: bool = True,
                solutions_dir: Path = SOLUTIONS_DIR) -> list[GradeResult]:
    limits = limits or Limits()
    assignment = find_assignment(assignment_name, solutions_dir)
    course = course_dir(assignment)
    _init_out(out, course)
    subs = discover(submissions, assignment)
    results_dir = out / "results"
    results_dir.mkdir(exist_ok=True)
    records: dict[str, GradeResult] = {}
    todo = []
    for sub in subs:
        record_path = results_dir / f"{sub.student}.record.json"
        key = _key(sub, course, limits)
        if not force and record_path.exists():
            try:
                saved = json.loads(record_path.read_text(encoding="utf-8"))
                if saved.get("key") == key:
                    records[sub.student] = GradeResult.from_record(saved["result"])
                    continue
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a damaged record is regraded
        todo.append((sub, key))

    bar = tqdm(total=len(subs), initial=len(subs) - len(todo), desc=f"grading {assignment.name}",
               unit="nb", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_grade_one, sub, assignment, course, out, submissions, limits,
                               solutions_dir):
                   (sub, key) for sub, key in todo}
        for future in as_completed(futures):
            sub, key = futures[future]
            result = future.result()
            records[sub.student] = result
            _save(out, course, sub.student, result, key)  # one writer: this thread
            bar.update(1)
    bar.close()
    ordered = [records[s.student] for s in subs]
    students = [s.student for s in subs]
    write_csv(out / "grades.csv", students, ordered, course)
    if any((out / "autograded").glob(f"*/{assignment.name}/*.ipynb")):
        run_nbgrader(out, "generate_feedback", assignment.name, "--force")
    return ordered


def _init_out(out: Path, course: CourseDir) -> None:
    out.mkdir(parents=True, exist_ok=True)
    a = course.assignment
    source = out / "source" / a.name
    if not source.exists():
        shutil.copytree(course.root / "source" / a.name, source)
    if not (out / "gradebook.db").exists():
        shutil.copyfile(course.db, out / "gradebook.db")
    write_config(out)


def _grade_one(sub: Submission, assignment: Assignment, course: CourseDir, out: Path,
               submissions: Path, limits: Limits, solutions_dir: Path) -> GradeResult:
    if sub.path is None:
        return zero_result(sub.student, course, "invalid", sub.problem)
    results = out / "results"
    record = results / f"{sub.student}.tmp.json"
    autograded = out / "autograded" / sub.student / assignment.name / f"{assignment.notebook}.ipynb"
    cmd = [sys.executable, "-m", "autograder", "grade", str(sub.path), "--assignment",
           assignment.name, "--json", str(results / f"{sub.student}.json"),
           "--record", str(record), "--autograded-out", str(autograded),
           "--cell-timeout", str(limits.cell_timeout), "--timeout", str(limits.timeout),
           "--memory-mb", str(limits.memory_mb or 0), "--hide", str(out.resolve()),
           "--hide", str(submissions.resolve()), "--solutions", str(solutions_dir), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limits.timeout + 120)
    except subprocess.TimeoutExpired:
        return zero_result(sub.student, course, "timeout",
                           "the grader did not finish within the notebook time limit")
    try:
        result = GradeResult.from_record(json.loads(record.read_text(encoding="utf-8")))
        record.unlink()
    except (OSError, json.JSONDecodeError, TypeError):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return zero_result(sub.student, course, "error", f"the grader failed: {last}")
    if proc.returncode != 0:
        result.state = "error"
    return result


def _save(out: Path, course: CourseDir, student: str, result: GradeResult, key: str) -> None:
    results = out / "results"
    result.write_json(results / f"{student}.json")
    (results / f"{student}.record.json").write_text(
        json.dumps({"key": key, "result": result.record()}, indent=1) + "\n", encoding="utf-8")
    _to_gradebook(out, course, student, result)


def _to_gradebook(out: Path, course: CourseDir, student: str, result: GradeResult) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    a = course.assignment
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        gb.update_or_create_student(student)
        try:
            gb.remove_submission(a.name, student)
        except MissingEntry:
            pass
        gb.add_submission(a.name, student)
        for test in result.tests:
            try:
                grade = gb.find_grade(test.name, a.notebook, a.name, student)
            except MissingEntry:
                continue
            grade.auto_score = test.score
            grade.needs_manual_grade = False
        notebook = gb.find_submission_notebook(a.notebook, a.name, student)
        notebook.flagged = result.state != "graded"
        gb.db.commit()


def write_csv(path: Path, students: list[str], results: list[GradeResult],
              course: CourseDir) -> None:
    source = nbformat.read(course.source, as_version=4)
    test_names = [grade_id(c) for c in source.cells if is_test_cell(c)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "score", "max_score", "status", "flags", "reason",
                         *test_names])
        for student, r in zip(students, results, strict=True):
            scores = {t.name: t.score for t in r.tests}
            writer.writerow([student, number(r.score), number(r.max_score), r.state,
                             ";".join(r.flags), r.reason,
                             *[number(scores.get(n, 0.0)) for n in test_names]])


