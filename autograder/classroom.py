"""Grading a whole class: `grade-class SUBMISSIONS --assignment NAME --out DIR`.

SUBMISSIONS holds one entry per student: a notebook file (the student is its name without the
extension) or a folder (a cloned student repository; the student is the folder's name). Each
submission is graded by a worker process (`python -m autograder worker`, one per job, each
grading one submission at a time in a fresh sandboxed kernel of its own), so nothing a submission
does can stop the batch: a worker that dies or runs out of time is replaced. The gradebook is
written by this process alone, one submission at a time.

DIR becomes an nbgrader course folder:
    grades.csv                                  one row per student, one column per test
    results/<student>.json                      GitHub Classroom JSON
    results/<student>.record.json               status, flags, reason, tests (resume key)
    submitted/<student>/<assignment>/<nb>.ipynb  the notebook as the student handed it in
    autograded/<student>/<assignment>/<nb>.ipynb
    feedback/<student>/<assignment>/<nb>.html   no hidden test code
    gradebook.db, source/, nbgrader_config.py   (formgrader works here)
Rerunning skips students whose submission has not changed since their record (unless --force).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from autograder import student_repo
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
from autograder.notebooks import MAX_NOTEBOOK_BYTES, grade_id, is_test_cell
from autograder.results import GradeResult, number

#: Seconds a worker may run beyond the notebook time limit (starting up, nbgrader) before it is
#: stopped, and seconds it then gets to clean up after SIGTERM.
WORKER_MARGIN = 120.0
STOP_GRACE = 15.0
IGNORED = {".git", ".github", ".ipynb_checkpoints", "__pycache__", ".DS_Store"}


@dataclass
class Submission:
    student: str
    path: Path | None  # None: nothing gradable was found
    problem: str = ""
    repo: Path | None = None  # the student's repository, when the submission is a folder


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
            found.append(Submission(student_id(entry.name), *_notebook_in(entry, assignment),
                                    repo=entry))
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
                solutions_dir: Path = SOLUTIONS_DIR, feedback: bool = True,
                stats: dict | None = None) -> list[GradeResult]:
    """Grade every submission in `submissions`; one result per submission, in name order.

    `stats`, if given, receives `graded` (submissions graded in this run, not resumed),
    `seconds` (this call's wall time), `cell_seconds` (the time their own cells took, summed)
    and `jobs`: the grader's overhead is `seconds - cell_seconds / jobs`.
    """
    started = time.monotonic()
    limits = limits or Limits()
    # nbgrader runs inside `out` and would resolve relative paths a second time from there
    submissions, out, solutions_dir = submissions.resolve(), out.resolve(), solutions_dir.resolve()
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

    expected: dict[str, bytes] = {}  # the template's files, read once if a repository needs them
    bar = tqdm(total=len(subs), initial=len(subs) - len(todo), desc=f"grading {assignment.name}",
               unit="nb", disable=not progress)
    gradable = sum(sub.path is not None for sub, _ in todo)
    workers = _Workers(queued=gradable, zygote=_shared_zygote(course) if gradable else None)
    try:
        workers.start(min(max(1, jobs), gradable))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_grade_one, sub, assignment, course, out, submissions, limits,
                                   solutions_dir, workers):
                       (sub, key) for sub, key in todo}
            for future in as_completed(futures):
                sub, key = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # a failure of the grader for one student: still a row
                    result = zero_result(sub.student, course, "error",
                                         f"the grader failed: {type(err).__name__}: {err}")
                if sub.repo is not None:
                    _flag_infrastructure(result, sub.repo, assignment.name, expected)
                records[sub.student] = result
                _save(out, course, sub.student, result, key)  # one writer: this thread
                bar.update(1)
    finally:
        workers.close_all()
        if workers.zygote is not None:
            workers.zygote[0].close()
    bar.close()
    ordered = [records[s.student] for s in subs]
    students = [s.student for s in subs]
    write_csv(out / "grades.csv", students, ordered, course)
    if feedback and any((out / "autograded").glob(f"*/{assignment.name}/*.ipynb")):
        run_nbgrader(out, "generate_feedback", assignment.name, "--force")
    if stats is not None:
        stats.update(graded=len(todo), jobs=max(1, jobs), seconds=time.monotonic() - started,
                     cell_seconds=sum(records[sub.student].cell_seconds for sub, _ in todo))
    return ordered


def overhead_line(stats: dict) -> str:
    """The class summary's line on where the time went (see `grade_class`'s `stats`)."""
    lanes = stats["cell_seconds"] / stats["jobs"]
    return (f"Time: {stats['seconds']:.1f} s for {stats['graded']} submissions on "
            f"{stats['jobs']} workers; their own cells ran {stats['cell_seconds']:.1f} s "
            f"({lanes:.1f} s per worker): grader overhead {stats['seconds'] - lanes:.1f} s")


def _flag_infrastructure(result: GradeResult, repo: Path, assignment: str,
                         expected: dict[str, bytes]) -> None:
    """Flag `infrastructure_modified=...` when the student's repository holds a grader, `llmlab`,
    workflow or setup files other than the template's. The grade itself never used them (it
    runs this checkout's grader), but Classroom's advisory points may have: worth a look."""
    if not any((repo / top).exists() for top in ("autograder", "llmlab", ".github")):
        return  # a folder holding answers only: nothing in it could have graded them
    if not expected:
        try:
            expected.update(student_repo.template_files(assignment))
        except Exception as err:  # e.g. no git checkout here: say so rather than fail the row
            result.flags.append(f"infrastructure_unchecked={type(err).__name__}")
            return
    changes = student_repo.infrastructure_changes(repo, expected)
    if changes:
        shown = ",".join(changes[:5]) + (f",+{len(changes) - 5} more" if len(changes) > 5 else "")
        result.flags.append("infrastructure_modified=" + shown)


#: In an output folder: the course digest each assignment's source/ and gradebook entries match.
BUILT_FROM = ".autograder-courses.json"


def _init_out(out: Path, course: CourseDir) -> None:
    """Make `out` an nbgrader course folder whose source/ and gradebook match `course`.

    A folder graded before the solutions changed (or before this marker existed) gets the new
    source/ and the assignment's gradebook entries rebuilt; other assignments in it are kept.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_config(out)
    a = course.assignment
    marker = out / BUILT_FROM
    try:
        built = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        built = {}
    source, db = out / "source" / a.name, out / "gradebook.db"
    if built.get(a.name) == course.digest and source.exists() and db.exists():
        return
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(course.root / "source" / a.name, source)
    if not db.exists():
        shutil.copyfile(course.db, db)
    else:
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{db}") as gb:
            try:
                gb.remove_assignment(a.name)  # and its submissions: they are regraded
            except MissingEntry:
                pass
        run_nbgrader(out, "generate_assignment", a.name, "--force")  # records the new cells
    built[a.name] = course.digest
    marker.write_text(json.dumps(built, indent=1) + "\n", encoding="utf-8")


class Worker:
    """A long-lived `python -m autograder worker` process (see `cli.serve_worker`): it grades
    one submission at a time, each in a fresh sandboxed kernel, and is replaced after a failure
    or a timeout. Its own process group, so that a stop reaches whatever it started."""

    def __init__(self, zygote: tuple | None = None) -> None:
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # its stderr
        env, fds, channel = None, (), None
        if zygote is not None:  # its kernels fork from grade-class's zygote (`_shared_zygote`)
            from autograder.zygote import CHANNEL_ENV

            try:
                channel = zygote[0].channel()
                env = {**os.environ, CHANNEL_ENV: f"{channel.fileno()}:{zygote[1]}"}
                fds = (channel.fileno(),)
            except OSError:  # the zygote is gone: the worker starts one of its own
                channel = None
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder", "worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, start_new_session=True,
                                     env=env, pass_fds=fds)
        if channel is not None:
            channel.close()

    def grade(self, argv: list[str], timeout: float, more: bool = False) -> int | None:
        """Run one `grade` request (`more`: another submission will follow, so the worker may
        start its kernel ahead); its exit status, or None if no answer came in `timeout` s or
        the worker died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"argv": argv, "more": more}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return None
        line = self.proc.stdout.readline()
        try:
            return int(json.loads(line)["rc"])
        except (ValueError, KeyError, TypeError):
            return None

    def last_error(self) -> str:
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()
        return lines[-1] if lines else "no output"

    def close(self, stop: bool = False) -> None:
        """End the worker: at once (`stop`: SIGTERM, then SIGKILL for its group) or by closing
        its input, which it reads as the end of the batch."""
        if stop or self.proc.poll() is not None:
            stop_worker(self.proc)
        else:
            try:
                self.proc.communicate(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                stop_worker(self.proc)
        self.log.close()


class _Workers:
    """One Worker per grading thread, started on first use; `close_all` ends them all."""

    def __init__(self, queued: int = 0, zygote: tuple | None = None) -> None:
        self.zygote = zygote  # (Zygote, key) the workers' kernels fork from, or None
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: list[Worker] = []
        self.queued = queued  # submissions not yet handed to a worker
        self.idle: list[Worker] = []  # started ahead, not yet owned by a thread

    def start(self, n: int) -> None:
        """Start `n` workers now, so that their start overlaps the batch's own setup."""
        for _ in range(n):
            worker = Worker(self.zygote)
            with self.lock:
                self.idle.append(worker)
                self.all.append(worker)

    def next_one(self) -> bool:
        """Count a submission as handed out; True if more are queued behind it."""
        with self.lock:
            self.queued = max(0, self.queued - 1)
            return self.queued > 0

    def get(self) -> Worker:
        worker = getattr(self.local, "worker", None)
        if worker is None or worker.proc.poll() is not None:
            if worker is not None:
                self.drop(worker)
            with self.lock:
                worker = self.idle.pop() if self.idle else None
            if worker is None:
                worker = Worker(self.zygote)
                with self.lock:
                    self.all.append(worker)
            self.local.worker = worker
        return worker

    def drop(self, worker: Worker, stop: bool = False) -> None:
        with self.lock:
            if worker in self.all:
                self.all.remove(worker)
        if getattr(self.local, "worker", None) is worker:
            self.local.worker = None
        worker.close(stop)

    def close_all(self) -> None:
        with self.lock:
            workers, self.all, self.idle = self.all, [], []
        for worker in workers:
            worker.close()


def _shared_zygote(course: CourseDir) -> tuple | None:
    """One zygote for every worker (autograder.zygote), started now so that its imports overlap
    the workers' start: (zygote, key), or None when kernels are not forked here. Each worker's
    kernels are still fresh forks of it, one per submission."""
    from autograder import sandbox, zygote
    from autograder.grading import _blocked_imports, _watched_modules

    if not sandbox.available().forked:
        return None
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        spec_env, python = dict(spec.env or {}), spec.argv[0]
        source = nbformat.read(course.source, as_version=4)
        modules = zygote.preimports(_watched_modules(source, _blocked_imports(source)))
        return (zygote.get(spec_env, modules, python),
                zygote.key_text(spec_env, modules, python))
    except Exception:  # noqa: BLE001 - each worker starts its own zygote instead
        return None


def _grade_one(sub: Submission, assignment: Assignment, course: CourseDir, out: Path,
               submissions: Path, limits: Limits, solutions_dir: Path,
               workers: _Workers | None = None) -> GradeResult:
    if sub.path is None:
        return zero_result(sub.student, course, "invalid", sub.problem)
    _keep_submitted(sub, assignment, out)
    results = out / "results"
    record = results / f"{sub.student}.tmp.json"
    record.unlink(missing_ok=True)
    autograded = out / "autograded" / sub.student / assignment.name / f"{assignment.notebook}.ipynb"
    argv = ["grade", str(sub.path), "--assignment",
            assignment.name, "--json", str(results / f"{sub.student}.json"),
            "--record", str(record), "--autograded-out", str(autograded),
            "--cell-timeout", str(limits.cell_timeout), "--timeout", str(limits.timeout),
            "--memory-mb", str(limits.memory_mb or 0), "--hide", str(out.resolve()),
            "--hide", str(submissions.resolve()), "--solutions", str(solutions_dir), "--quiet"]
    own = workers is None  # called alone: a worker for this submission only
    workers = workers or _Workers()
    worker = workers.get()
    try:
        rc = worker.grade(argv, limits.timeout + WORKER_MARGIN, more=workers.next_one())
        if rc is None:
            alive = worker.proc.poll() is None
            workers.drop(worker, stop=True)
            if alive:
                return zero_result(sub.student, course, "timeout",
                                   "the grader did not finish within the notebook time limit")
            return zero_result(sub.student, course, "error",
                               f"the grader failed: {worker.last_error()}")
        try:
            result = GradeResult.from_record(json.loads(record.read_text(encoding="utf-8")))
            record.unlink()
        except (OSError, json.JSONDecodeError, TypeError):
            return zero_result(sub.student, course, "error",
                               f"the grader failed: {worker.last_error()}")
        if rc != 0:
            result.state = "error"
        return result
    finally:
        if own:
            workers.close_all()


def _keep_submitted(sub: Submission, assignment: Assignment, out: Path) -> None:
    """Copy the student's notebook to `submitted/`, where nbgrader keeps submissions: the
    formgrader counts them there and nbgrader's own commands find them. Only a regular
    `.ipynb` file within the notebook size limit is copied (never a symlink); a copy that
    fails changes nothing about the grade."""
    assert sub.path is not None
    if sub.path.suffix != ".ipynb":
        return
    kept = out / "submitted" / sub.student / assignment.name / f"{assignment.notebook}.ipynb"
    try:
        info = sub.path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_NOTEBOOK_BYTES:
            return
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub.path, kept)
    except OSError:
        kept.unlink(missing_ok=True)


def stop_worker(proc: subprocess.Popen) -> None:
    """Stop a worker that ran out of time: SIGTERM first, so that it shuts its kernel down and
    removes its run folder (see `cli`), then SIGKILL for its whole process group."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _save(out: Path, course: CourseDir, student: str, result: GradeResult, key: str) -> None:
    """Write the student's results and gradebook entry; a score the gradebook cannot hold is
    flagged on the result (and so in grades.csv), never dropped silently."""
    try:
        missing = _to_gradebook(out, course, student, result)
        if missing:
            result.flags.append("not_in_gradebook=" + ",".join(missing))
    except Exception as err:
        result.flags.append(f"gradebook_error={type(err).__name__}")
    results = out / "results"
    result.write_json(results / f"{student}.json")
    (results / f"{student}.record.json").write_text(
        json.dumps({"key": key, "result": result.record()}, indent=1) + "\n", encoding="utf-8")


def _to_gradebook(out: Path, course: CourseDir, student: str, result: GradeResult) -> list[str]:
    """Store `result` as the student's submission; return the tests the gradebook lacks."""
    from nbgrader.api import Gradebook, MissingEntry

    a = course.assignment
    missing = []
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        gb.update_or_create_student(student)
        try:
            gb.remove_submission(a.name, student)
        except MissingEntry:
            pass
        # nbgrader builds the submission's objects before adding them to the session; without
        # this, SQLAlchemy 2 warns that autoflush met objects not yet in the session
        with gb.db.no_autoflush:
            gb.add_submission(a.name, student)
        for test in result.tests:
            try:
                grade = gb.find_grade(test.name, a.notebook, a.name, student)
            except MissingEntry:
                missing.append(test.name)
                continue
            grade.auto_score = test.score
            grade.needs_manual_grade = False
        notebook = gb.find_submission_notebook(a.notebook, a.name, student)
        notebook.flagged = result.state != "graded" or bool(missing)
        gb.db.commit()
    return missing


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


