"""Grading one notebook: the learner's `check` and the instructor's `grade`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder import sandbox
from autograder.course import (
    SOLUTIONS_DIR,
    CourseDir,
    assignment_name,
    course_dir,
    find_assignment,
    match_assignment,
)
from autograder.execute import CellOutcome, Execution, Runner, make_run_dir, remove_run_dir
from autograder.guard import Guard, watched_modules
from autograder.notebooks import (
    InvalidNotebook,
    Merged,
    grade_id,
    is_answer_cell,
    is_hidden_test,
    is_instructor_cell,
    is_test_cell,
    merge,
    points,
    read_notebook,
)
from autograder.results import GradeResult, TestResult
from autograder.screen import screen

DEFAULT_CELL_TIMEOUT = 60  # seconds per cell; every solution cell runs in under 10 s
DEFAULT_TIMEOUT = 600  # seconds per notebook, replays after a crash included
DEFAULT_MEMORY_MB = 4096  # address-space cap of a sandboxed kernel
MESSAGE_CHARS = 300


@dataclass
class Limits:
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int | None = DEFAULT_MEMORY_MB


@dataclass
class Graded:
    result: GradeResult
    notebook: NotebookNode | None = None  # the executed notebook (hidden outputs reduced)


def check(path: Path, limits: Limits, release: Path | None = None) -> Graded:
    """Visible tests only, from nothing but the notebook (and its released version if found).

    The assignment is the one named in the notebook's metadata (stamped at release), so a renamed
    copy is checked as what it is; a notebook without that metadata is named by its file.
    """
    try:
        nb = read_notebook(path)
    except InvalidNotebook as err:
        return Graded(GradeResult(path.name, path.stem, "invalid", str(err)))
    assignment = assignment_name(nb) or path.stem
    release = release or _find_release(path, assignment)
    flags: list[str] = []
    if release is not None:
        pristine = nbformat.read(release, as_version=4)
        merged = merge(nb, pristine, pristine)
        if merged.restored:
            flags.append("tests_restored")
    else:
        merged = Merged(nb=nb)
        if _edited_tests(nb):
            flags.append("tests_edited")
    if not any(is_test_cell(c) and not is_hidden_test(c) for c in merged.nb.cells):
        return Graded(GradeResult(path.name, assignment, "invalid",
                                  "no visible test cells found: is this an LLM Lab assignment?"))
    blocked = _blocked_imports(merged.nb)
    guard = Guard(watched=_watched_modules(merged.nb, blocked), blocked=blocked)
    execution = _execute(merged.nb, limits, guard, sandbox.Isolation("none", "learner's check"),
                         [], skip_hidden=True)
    result = _result(path.name, assignment, merged, execution, False, flags)
    result.hidden_points = sum(points(c) for c in merged.nb.cells if is_hidden_test(c))
    return Graded(result, merged.nb)


def grade(path: Path, limits: Limits, assignment_name: str | None = None,
          solutions_dir: Path = SOLUTIONS_DIR, extra_hidden: list[Path] | None = None,
          isolate: bool = True) -> Graded:
    """Visible and hidden tests from the matching solutions notebook."""
    try:
        nb = read_notebook(path)
    except InvalidNotebook as err:
        if assignment_name is None:
            return Graded(GradeResult(path.name, "?", "invalid", str(err)))
        course = course_dir(find_assignment(assignment_name, solutions_dir))
        return Graded(zero_result(path.name, course, "invalid", str(err)))
    assignment = (find_assignment(assignment_name, solutions_dir) if assignment_name
                  else match_assignment(nb, path.name, solutions_dir))
    if assignment is None:
        return Graded(GradeResult(path.name, "?", "invalid",
                                  "no assignment matches this notebook; pass --assignment"))
    course = course_dir(assignment)
    source = nbformat.read(course.source, as_version=4)
    release = nbformat.read(course.release, as_version=4)
    merged = merge(nb, source, release)
    flags = ["tests_restored"] if merged.restored else []
    if merged.missing_answers:
        flags.append("answers_missing")
    isolation = sandbox.available() if isolate else sandbox.Isolation("none", "disabled")
    flags += isolation.flags
    hidden = _secret_paths(course, solutions_dir) + list(extra_hidden or [])
    blocked = _blocked_imports(source)
    guard = Guard(watched=_watched_modules(source, blocked), blocked=blocked)
    execution = _execute(merged.nb, limits, guard, isolation, hidden, skip_hidden=False)
    result = _result(path.name, assignment.name, merged, execution, True, flags)
    result.isolation = isolation.describe()
    _reduce_hidden_outputs(merged.nb)
    return Graded(result, merged.nb)


def zero_result(name: str, course: CourseDir, state: str, reason: str) -> GradeResult:
    """A result for a submission that could not run: every test listed, each scoring 0."""
    source = nbformat.read(course.source, as_version=4)
    tests = [TestResult(grade_id(c) or "?", 0.0, points(c), reason)
             for c in source.cells if is_test_cell(c)]
    return GradeResult(name, course.assignment.name, state, reason, [], tests)


def _execute(nb: NotebookNode, limits: Limits, guard: Guard, isolation: sandbox.Isolation,
             hidden: list[Path], skip_hidden: bool) -> Execution:
    """Run all code cells; hidden tests last, after every student cell has run."""
    order = [i for i, c in enumerate(nb.cells) if not is_hidden_test(c)]
    if not skip_hidden:
        order += [i for i, c in enumerate(nb.cells) if is_hidden_test(c)]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    runner = Runner(nb, cell_timeout=limits.cell_timeout, notebook_timeout=limits.timeout,
                    guard=guard, isolation=isolation, hidden_paths=hidden,
                    memory_mb=limits.memory_mb if isolation.level != "none" else None,
                    screened=screen(nb, guard.blocked))
    run_dir = make_run_dir()
    try:
        return runner.run(order, run_dir)
    finally:
        remove_run_dir(run_dir)


def _result(filename: str, assignment: str, merged: Merged, execution: Execution,
            with_hidden: bool, flags: list[str]) -> GradeResult:
    """Score the test cells of `merged.nb` (hidden ones too if `with_hidden`) by position."""
    results = []
    for index, cell in enumerate(merged.nb.cells):
        if not is_test_cell(cell) or (is_hidden_test(cell) and not with_hidden):
            continue
        outcome = execution.outcomes.get(index, CellOutcome("skipped", note="not run"))
        # tests that ran before tampering was found keep their points; the rest did not run
        passed = outcome.status == "ok"
        message = "" if passed else _message(outcome, execution)
        if not passed and outcome.status == "error":
            message = _with_answer_error(message, merged.nb.cells, index, execution)
        results.append(TestResult(grade_id(cell) or "?", points(cell) if passed else 0.0,
                                  points(cell), message))
        cell.metadata["autograder"] = {"message": message}  # the feedback page's reason
    if execution.restarts:
        flags.append(f"kernel_restarts={execution.restarts}")
    if execution.tampering:
        state, reason = "tampered", "the submission altered the grading environment: " + \
            "; ".join(execution.tampering)
    elif execution.unverified:
        state, reason = "error", (f"{execution.unverified}: the tests from that point on were "
                                  "not counted (this is not an accusation; grade it again)")
    elif execution.crashed:
        state, reason = "crashed", "the kernel died; tests after the crash ran in a new kernel"
    elif execution.timed_out or any(o.status == "timeout" for o in execution.outcomes.values()):
        state, reason = "timeout", ("the notebook time limit was reached" if execution.timed_out
                                    else "a cell ran past the cell time limit and was stopped")
    else:
        state, reason = "graded", ""
    return GradeResult(filename, assignment, state, _one_line(reason, 500), flags, results,
                       round(execution.seconds, 2), round(execution.cell_seconds, 2))


def _message(outcome: CellOutcome, execution: Execution) -> str:
    if outcome.status == "skipped" and "altered" in outcome.note:
        return "not counted: the submission altered the grading environment"
    if outcome.status == "skipped":
        return outcome.note
    if outcome.ename == "NotImplementedError":
        return "not answered yet: the answer still raises NotImplementedError"
    if outcome.ename == "AssertionError" and not outcome.evalue.strip():
        return "AssertionError (a test failed)"
    text = f"{outcome.ename}: {outcome.evalue}" if outcome.evalue else outcome.ename
    if outcome.note:
        text += f" ({outcome.note})"
    return _one_line(text, MESSAGE_CHARS)


def _with_answer_error(message: str, cells: list, test_index: int, execution: Execution) -> str:
    """Name the error of the answer cell above a failed test: the test's own error (often a
    NameError) does not say that the answer cell never finished."""
    for i in range(test_index - 1, -1, -1):
        if is_answer_cell(cells[i]):
            before = execution.outcomes.get(i)
            if before is None or before.status != "error" or before.ename == "NotImplementedError":
                return message
            cause = f"{before.ename}: {before.evalue}" if before.evalue else before.ename
            return _one_line(f"{message} (the answer cell above raised {cause})", MESSAGE_CHARS)
    return message


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reduce_hidden_outputs(nb: NotebookNode) -> None:
    """Hidden test cells keep only pass/fail and the assert message, never code or values."""
    for cell in nb.cells:
        if not is_hidden_test(cell):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        cell.outputs = []
        if errors:
            err = errors[-1]
            line = _one_line(f"{err.get('ename', '')}: {err.get('evalue', '')}", MESSAGE_CHARS)
            cell.outputs.append(nbformat.v4.new_output("error", ename=err.get("ename", ""),
                                                       evalue=err.get("evalue", ""),
                                                       traceback=[line]))


def _secret_paths(course: CourseDir, solutions_dir: Path) -> list[Path]:
    from llmlab import PROJECT_ROOT

    return [solutions_dir, SOLUTIONS_DIR, course.root.parent, PROJECT_ROOT / ".git",
            PROJECT_ROOT / "tests"]


def _watched_modules(nb: NotebookNode, blocked: list[str]) -> list[str]:
    """What the locked cells (setup and tests) import and reach by attribute: see guard.py."""
    return watched_modules([c.source for c in nb.cells
                            if c.cell_type == "code" and is_instructor_cell(c)], blocked)


def _blocked_imports(nb: NotebookNode) -> list[str]:
    """Modules an assignment forbids (notebook metadata `autograder.blocked_imports`)."""
    blocked = nb.metadata.get("autograder", {}).get("blocked_imports", [])
    return [str(b) for b in blocked] + ["autograder"]


def _find_release(path: Path, assignment: str) -> Path | None:
    """The released notebook in an enclosing course checkout, unless it is this very file."""
    for parent in path.resolve().parents:
        candidate = parent / "assignments" / assignment / f"{assignment}.ipynb"
        if candidate.exists():
            return None if candidate.resolve() == path.resolve() else candidate
    return None


def _edited_tests(nb: NotebookNode) -> bool:
    """True if a test cell's text differs from the checksum nbgrader recorded at release."""
    from nbgrader.utils import compute_checksum

    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if is_test_cell(cell) and "checksum" in meta and compute_checksum(cell) != meta["checksum"]:
            return True
    return False
