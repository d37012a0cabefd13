"""Command line: python -m autograder {check,grade,grade-class,bench,formgrader,student-repo,
release,run-lectures}.

Exit status: 0 whenever a result was produced, including for a notebook that could not be graded
(its status says why); non-zero only when the grader itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from autograder.course import SOLUTIONS_DIR
from autograder.grading import DEFAULT_CELL_TIMEOUT, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, Limits
from autograder.results import GradeResult


def _limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds one cell may run (default {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds the whole notebook may run (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                        help=f"address-space cap of a sandboxed kernel in MB, 0 for none "
                             f"(default {DEFAULT_MEMORY_MB})")


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr (and exit status 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m autograder", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="run the visible tests of your notebook (learners)")
    p.add_argument("notebook", type=Path)
    p.add_argument("--json", type=Path, help="also write GitHub Classroom JSON here")
    p.add_argument("--release", type=Path,
                   help="the released notebook to restore test cells from (found automatically "
                        "in a course checkout)")
    _limits(p)

    p = sub.add_parser("grade", help="visible and hidden tests from solutions/ (instructors)")
    p.add_argument("notebook", type=Path)
    p.add_argument("--assignment", help="assignment name (default: inferred from the notebook)")
    p.add_argument("--json", type=Path, help="write GitHub Classroom JSON here")
    p.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--autograded-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--hide", type=Path, action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    _limits(p)

    # grade-class's long-lived worker: runs `grade` argument lists read from stdin, one JSON
    # list a line, answering each with its exit status on stdout (see classroom.Worker)
    sub.add_parser("worker")

    p = sub.add_parser("grade-class", help="grade a folder of submissions (instructors)")
    p.add_argument("submissions", type=Path, help="folder: one notebook or repository per student")
    p.add_argument("--assignment", required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (an nbgrader course)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (default 2)")
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.add_argument("--no-feedback", action="store_true",
                   help="skip the feedback pages (grades.csv and the gradebook only)")
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    _limits(p)

    p = sub.add_parser("bench", help="time plain nbgrader and grade-class on one batch built "
                                     "from an assignment (maintainers)")
    p.add_argument("--assignment", required=True)
    p.add_argument("-n", type=int, default=12, help="submissions (default 12: a third correct, "
                                                    "a third unanswered, a third wrong)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="grade-class workers (default 2)")
    p.add_argument("--feedback", action="store_true",
                   help="time grade-class with its feedback pages too (nbgrader makes none)")
    p.add_argument("--keep", type=Path, help="build and keep the batch and outputs here")
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)

    p = sub.add_parser("formgrader", help="open nbgrader's formgrader on a grade-class output "
                                          "folder (instructors)")
    p.add_argument("out", type=Path, help="the --out folder of grade-class")
    p.add_argument("--port", type=int, default=8889)
    p.add_argument("--browser", action="store_true", help="open a browser tab")

    p = sub.add_parser("student-repo", help="build the GitHub Classroom template repository")
    p.add_argument("--assignment", required=True)
    p.add_argument("--out", type=Path, required=True, help="a new folder")

    p = sub.add_parser("release", help="regenerate assignments/ from solutions/ (maintainers)")
    p.add_argument("--only", help="one module: its folder name or number (e.g. 09)")
    p = sub.add_parser("run-lectures", help="execute lectures and save their outputs")
    p.add_argument("lectures", nargs="*", type=Path, help="default: every course/*.ipynb")
    p.add_argument("--only", help="one module: its lecture's name or number (e.g. 09)")
    return parser


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (grade-class stopping a worker that ran out of time) unwinds like an exception,
    so the `finally` blocks shut the kernel down and remove the run folder."""
    raise SystemExit(128 + signum)


def serve_worker() -> int:
    """grade-class's worker: one `grade` per request line, in this one process, so that the
    interpreter, nbformat, nbclient and the sandbox probe start once per worker rather than once
    per submission. Every submission still gets a fresh kernel of its own: the worker runs no
    student code; it keeps one warm kernel ahead (execute.KernelPool) while `more` submissions
    are expected. Requests are `{"argv": [grade arguments], "more": bool}`; each answer is one line
    `{"rc": N}` on the original stdout (anything printed meanwhile goes to stderr)."""
    from autograder import execute

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    execute.POOL = execute.KernelPool()
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            argv = request.get("argv") if isinstance(request, dict) else None
            if not (isinstance(argv, list) and argv and argv[0] == "grade"):
                answers.write(json.dumps({"rc": 2, "error": "not a grade request"}) + "\n")
                continue
            execute.POOL.ahead = bool(request.get("more", True))
            rc = main([str(a) for a in argv])  # SystemExit (grade-class's SIGTERM) ends it
            sys.stdout.flush()
            answers.write(json.dumps({"rc": rc}) + "\n")
    finally:  # the warm kernel for a submission that never came
        execute.POOL.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        signal.signal(signal.SIGTERM, _terminated)
        return serve_worker()
    signal.signal(signal.SIGTERM, _terminated)
    problem = _missing_input(args)
    if problem:  # the learner's or instructor's mistake, not the submission's: non-zero exit
        print(f"python -m autograder {args.command}: error: {problem}", file=sys.stderr)
        if getattr(args, "json", None) is not None:
            GradeResult(str(args.notebook), getattr(args, "assignment", None) or "?", "error",
                        problem).write_json(args.json)
        return 2
    if args.command in ("grade", "grade-class", "bench"):
        from autograder import sandbox

        problem = sandbox.platform_problem()
        if problem:  # no sandbox on this operating system: refuse rather than run student code
            print(f"python -m autograder {args.command}: {problem}", file=sys.stderr)
            return 2
        isolation = sandbox.available()
        if isolation.level != "full" and not getattr(args, "quiet", False):
            print(f"warning: the sandbox is incomplete: {isolation.reason}", file=sys.stderr)
    limits = Limits(getattr(args, "cell_timeout", DEFAULT_CELL_TIMEOUT),
                    getattr(args, "timeout", DEFAULT_TIMEOUT),
                    getattr(args, "memory_mb", DEFAULT_MEMORY_MB) or None)
    try:
        if args.command == "check":
            from autograder.grading import check

            return _report(check(args.notebook, limits, args.release).result, args.json, None,
                           False)
        if args.command == "grade":
            from autograder.grading import grade

            graded = grade(args.notebook, limits, args.assignment, args.solutions,
                           extra_hidden=args.hide)
            if args.autograded_out and graded.notebook is not None:
                import nbformat

                args.autograded_out.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(graded.notebook, args.autograded_out)
            return _report(graded.result, args.json, args.record, args.quiet)
        if args.command == "grade-class":
            from autograder.classroom import grade_class, overhead_line

            stats: dict = {}
            results = grade_class(args.submissions, args.assignment, args.out, args.jobs, limits,
                                  args.force, solutions_dir=args.solutions,
                                  feedback=not args.no_feedback, stats=stats)
            counts: dict[str, int] = {}
            for r in results:
                counts[r.state] = counts.get(r.state, 0) + 1
            print(f"{len(results)} submissions: " +
                  ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            print("Sandbox: " + isolation.describe())
            print(overhead_line(stats))
            print(f"grades: {args.out / 'grades.csv'}" +
                  ("" if args.no_feedback else f"   feedback: {args.out / 'feedback'}"))
            return 0
        if args.command == "bench":
            from autograder.bench import bench

            print(json.dumps(bench(args.assignment, args.n, args.jobs, args.feedback,
                                   args.solutions, args.keep)))
            return 0
        if args.command == "formgrader":
            from llmlab.setup import lab

            if not (args.out / "gradebook.db").is_file():
                print(f"{args.out} is not a grade-class output folder (no gradebook.db)",
                      file=sys.stderr)
                return 2
            lab(args.port, args.browser, instructor_root=args.out.resolve())
            return 0
        if args.command == "student-repo":
            from autograder.student_repo import build

            files = build(args.assignment, args.out)
            print(f"{args.out}: {len(files)} files committed. Push it to GitHub, mark it as a "
                  "template repository, and use it as the starter code of a Classroom assignment.")
            return 0
        if args.command == "release":
            from autograder.course import release_all

            for path in release_all(only=args.only):
                print(f"generated {path}")
            return 0
        if args.command == "run-lectures":
            from autograder.lectures import run_lectures

            run_lectures(args.lectures, only=args.only)
            return 0
    except Exception as err:  # the grader itself failed: say so, and still leave a result file
        traceback.print_exc()
        out = getattr(args, "json", None)
        if out is not None and args.command in ("check", "grade"):
            GradeResult(str(args.notebook), getattr(args, "assignment", None) or "?", "error",
                        f"the grader failed: {type(err).__name__}: {err}").write_json(out)
        return 2
    return 1


def _missing_input(args: argparse.Namespace) -> str:
    """Why the command's input path cannot be used at all, or "" if it can."""
    if args.command in ("check", "grade"):
        if not args.notebook.exists():
            return f"no such file: {args.notebook}"
        if args.notebook.is_dir():
            return f"{args.notebook} is a folder: give the notebook file (.ipynb) inside it"
    if args.command == "grade-class" and not args.submissions.is_dir():
        return f"no such folder: {args.submissions}"
    if args.command == "check" and args.release is not None and not args.release.is_file():
        return f"no such file: {args.release}"
    return ""


def _report(result: GradeResult, json_path: Path | None, record_path: Path | None,
            quiet: bool) -> int:
    if json_path is not None:
        result.write_json(json_path)
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(result.record(), indent=1) + "\n", encoding="utf-8")
    if not quiet:
        print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
