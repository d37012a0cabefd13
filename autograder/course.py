"""The nbgrader side: assignments found in `solutions/`, generated student versions, gradebooks.

No gradebook is committed. For each assignment, an nbgrader course folder is built from its
solutions notebook with `nbgrader generate_assignment` and cached under `.cache/autograder/courses`
by the hash of that notebook: it holds the student version (`release/`) and a gradebook that knows
every graded cell. `grade-class` copies it into its output folder, which is then a complete nbgrader
course folder (formgrader works there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder.notebooks import grade_id
from llmlab import CACHE_DIR, PROJECT_ROOT

SOLUTIONS_DIR = PROJECT_ROOT / "solutions"
ASSIGNMENTS_DIR = PROJECT_ROOT / "assignments"
COURSES_DIR = CACHE_DIR / "autograder" / "courses"
FEEDBACK_TEMPLATES = Path(__file__).parent / "templates"  # see autograder/feedback.py
#: Bump when NBGRADER_CONFIG or build_course changes, so cached course folders rebuild.
CONFIG_VERSION = "2"

NBGRADER_CONFIG = """\
# Written by autograder.course; every value here is what LLM Lab relies on.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
c.CourseDirectory.course_id = "llmlab"
# Feedback never shows hidden tests (nbgrader shows them by default).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "autograder.feedback.FeedbackSummary",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# A page that works offline: maths drawn as SVG, no MathJax, styled tables (autograder/feedback.py).
c.GenerateFeedback.exporter_class = "autograder.feedback.FeedbackExporter"
c.FeedbackExporter.template_name = "llmlab_feedback"
c.FeedbackExporter.extra_template_basedirs = [{templates!r}]
c.FeedbackExporter.exclude_input_prompt = True
c.FeedbackExporter.exclude_output_prompt = True
"""


class CourseError(RuntimeError):
    """The course material itself is broken (not the student's fault)."""


@dataclass(frozen=True)
class Assignment:
    name: str
    source: Path  # solutions/<name>/<name>.ipynb

    @property
    def notebook(self) -> str:
        return self.source.stem


def assignments(solutions_dir: Path = SOLUTIONS_DIR) -> list[Assignment]:
    found = []
    for folder in sorted(p for p in solutions_dir.glob("*") if p.is_dir()):
        nb = folder / f"{folder.name}.ipynb"
        if nb.exists():
            found.append(Assignment(folder.name, nb))
    return found


def find_assignment(name: str, solutions_dir: Path = SOLUTIONS_DIR) -> Assignment:
    for a in assignments(solutions_dir):
        if a.name == name:
            return a
    known = ", ".join(a.name for a in assignments(solutions_dir)) or "none"
    raise CourseError(f"no assignment {name!r} in {solutions_dir} (known: {known})")


def match_assignment(nb: NotebookNode, filename: str,
                     solutions_dir: Path = SOLUTIONS_DIR) -> Assignment | None:
    """The assignment a submission belongs to: by the name in its metadata, else by file name,
    else by its cells' grade_ids."""
    every = assignments(solutions_dir)
    for name in (assignment_name(nb), Path(filename).stem):
        for a in every:
            if name in (a.name, a.notebook):
                return a
    ids = {grade_id(c) for c in nb.cells} - {None}
    best, best_overlap = None, 0
    for a in every:
        source_ids = {grade_id(c) for c in nbformat.read(a.source, as_version=4).cells} - {None}
        overlap = len(ids & source_ids)
        if overlap > best_overlap:
            best, best_overlap = a, overlap
    return best


@dataclass(frozen=True)
class CourseDir:
    assignment: Assignment
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def release(self) -> Path:
        a = self.assignment
        return self.root / "release" / a.name / f"{a.notebook}.ipynb"

    @property
    def source(self) -> Path:
        a = self.assignment
        return self.root / "source" / a.name / f"{a.notebook}.ipynb"

    @property
    def digest(self) -> str:
        return self.root.name.rsplit("-", 1)[-1]


def source_digest(assignment: Assignment) -> str:
    h = hashlib.sha256(assignment.source.read_bytes())
    h.update(f"{metadata.version('nbgrader')}/{CONFIG_VERSION}".encode())
    return h.hexdigest()[:16]


def course_dir(assignment: Assignment, cache: Path = COURSES_DIR) -> CourseDir:
    """The cached nbgrader course folder of `assignment`, built if needed."""
    root = (cache / f"{assignment.name}-{source_digest(assignment)}").resolve()
    if (root / ".complete").exists():
        write_config(root)  # a folder built before configs named their final place
        return CourseDir(assignment, root)
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{assignment.name}-", dir=cache))
    try:
        build_course(assignment, building)
        write_config(building, root)  # the config names where the folder will live
        (building / ".complete").write_text("ok\n")
        try:
            building.rename(root)
        except OSError:  # another process finished first; use its folder
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return CourseDir(assignment, root)


def write_config(folder: Path, root: Path | None = None) -> None:
    """Write `folder`'s nbgrader_config.py for a course living at `root` (default: `folder`).

    Paths are absolute: nbgrader resolves a relative root against its working folder, which is
    the course folder itself. The file is only rewritten when its text changes.
    """
    root = (root or folder).resolve()
    text = NBGRADER_CONFIG.format(root=str(root), db=str(root / "gradebook.db"),
                                  templates=str(FEEDBACK_TEMPLATES))
    config = folder / "nbgrader_config.py"
    if not config.exists() or config.read_text(encoding="utf-8") != text:
        partial = config.with_name(f".{config.name}.{os.getpid()}")
        partial.write_text(text, encoding="utf-8")
        partial.replace(config)  # atomic: concurrent readers see the old or the new file


def run_nbgrader(root: Path, *args: str) -> None:
    """Run an nbgrader command in course folder `root`; raise CourseError on failure."""
    env = dict(os.environ)
    # nbgrader runs the `alembic` executable, which lives next to this interpreter.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise CourseError(f"nbgrader {' '.join(args)} failed:\n" + "\n".join(log))


def assignment_name(nb: NotebookNode) -> str | None:
    """The assignment a notebook was released for (metadata `autograder.assignment`)."""
    meta = nb.metadata.get("autograder", {})
    name = meta.get("assignment") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None


def build_course(assignment: Assignment, root: Path) -> None:
    """Generate the student version of `assignment` in course folder `root`.

    The source copy is stamped with the assignment's name (metadata `autograder.assignment`),
    which nbgrader carries into the released notebook: `check` reads it from there.
    """
    target = root / "source" / assignment.name / f"{assignment.notebook}.ipynb"
    target.parent.mkdir(parents=True)
    nb = nbformat.read(assignment.source, as_version=4)
    nb.metadata.setdefault("autograder", {})["assignment"] = assignment.name
    nbformat.write(nb, target)
    write_config(root)
    run_nbgrader(root, "generate_assignment", assignment.name, "--force")


def release_all(solutions_dir: Path = SOLUTIONS_DIR, assignments_dir: Path = ASSIGNMENTS_DIR,
                only: str | None = None) -> list[Path]:
    """Regenerate every student notebook in `assignments_dir` from `solutions_dir` (or only the
    module whose folder name starts with `only`, e.g. "09")."""
    chosen = [a for a in assignments(solutions_dir) if only is None or a.name.startswith(only)]
    if not chosen:
        raise ValueError(f"no assignment in {solutions_dir} starts with {only!r}")
    written = []
    for a in chosen:
        course = course_dir(a)
        target = assignments_dir / a.name / f"{a.notebook}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(course.release, target)
        written.append(target)
    return written
