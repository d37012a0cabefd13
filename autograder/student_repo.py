"""Building the GitHub Classroom template repository for one assignment.

    python -m autograder student-repo --assignment 01_ml_basics --out ../llmlab-01

The template holds what a student needs — the lectures, the released notebook of this one
assignment, the `llmlab` and `autograder` packages (for `check`), the setup files with a Makefile
and pyproject.toml cut down to what works without `solutions/` and `tests/` — and the Classroom
workflow, set to this assignment. It never holds `solutions/`, the test suite, or anything with a
solution or hidden test in it: `build` refuses to finish if a file does.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from autograder.course import find_assignment
from llmlab import PROJECT_ROOT

#: Tracked paths that stay with the instructors.
EXCLUDED = ("solutions/", "tests/", ".github/", ".ci/", "docs/")
# nbgrader's delimiters, spelled in two parts so that this file does not contain them itself
LEAK_MARKERS = tuple("BEGIN " + what for what in ("SOLUTION", "HIDDEN TESTS"))
WORKFLOW_TEMPLATE = PROJECT_ROOT / ".github" / "templates" / "classroom.yml"
#: Makefile targets that need solutions/, tests/ or a grading folder, or rewrite course files.
INSTRUCTOR_TARGETS = ("test", "assignments", "lectures", "grade", "grade-class", "formgrader",
                      "student-repo")

README = """\
# {assignment} — LLM Lab

Your assignment is `assignments/{assignment}/{assignment}.ipynb`; the lectures are in `course/`.

1. Set up and open JupyterLab (the first time installs everything into `.venv`; no internet
   is needed afterwards):
   ```bash
   make lab
   ```
   Windows (no make):
   ```powershell
{windows}
   ```
2. Replace each `raise NotImplementedError()` with your answer; run the test cells.
3. Check your work (`make check` does the same):
   ```bash
   .venv/bin/python -m autograder check assignments/{assignment}/{assignment}.ipynb
   ```
   These are the visible tests; your instructor's grade adds hidden tests of edge cases.
4. Submit: `git add`, `git commit`, `git push`. GitHub Classroom runs the check on every push and
   shows your points.
"""

MAKEFILE_HEADER = """\
# LLM Lab — {assignment}. Thin wrappers; the work is done in Python (llmlab.setup, autograder).
# make lab     first time: creates .venv and installs everything; then opens JupyterLab
#              (PORT=8888 OPEN_BROWSER=1 to change the defaults)
# make check   the visible tests of your assignment, as GitHub Classroom runs them
"""

MAKEFILE_CHECK = """\
check: setup
\t$(PY) -m autograder check assignments/{assignment}/{assignment}.ipynb
"""


def windows_commands(readme: str, assignment: str) -> list[str]:
    """The main README's Windows commands, the check pointed at `assignment`."""
    section = readme.split("## Windows (no make)", 1)[1]
    block = section.split("```powershell", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.strip().splitlines() if line.strip()]
    released = f"assignments\\{assignment}\\{assignment}.ipynb"
    return [re.sub(r"assignments\\\S+", lambda _: released, c) for c in commands]


def student_makefile(makefile: str, assignment: str) -> str:
    """The main Makefile without the instructors' and maintainers' targets, plus `check`.

    The Makefile is read as blank-line separated blocks; the leading comment block is replaced,
    blocks defining an instructor target are dropped, the `.PHONY` line lists what is left.
    The student's setup installs without the test tools (as the Classroom workflow does).
    """
    blocks = makefile.strip("\n").split("\n\n")[1:]
    kept = []
    for block in blocks:
        rules = [line.split(":", 1)[0] for line in block.splitlines()
                 if re.match(r"^[A-Za-z$(][^\s:=]*:(?!=)", line)]
        if any(rule in INSTRUCTOR_TARGETS for rule in rules):
            continue
        kept.append(block)
    kept.insert(-1, MAKEFILE_CHECK.format(assignment=assignment).strip("\n"))
    targets = ["setup", "lab", "check", "clean"]
    text = "\n\n".join(kept).replace(" install --dev", " install")
    text = re.sub(r"^\.PHONY:.*$", ".PHONY: " + " ".join(targets), text, flags=re.M)
    return MAKEFILE_HEADER.format(assignment=assignment) + "\n" + text + "\n"


def student_pyproject(pyproject: str) -> str:
    """pyproject.toml without the pytest settings (the template has no tests)."""
    return re.sub(r"^\[tool\.pytest\.ini_options\]\n(?:(?!\[).*\n|\n)*", "", pyproject,
                  flags=re.M)


class LeakError(RuntimeError):
    """A file bound for students contains a solution or hidden tests."""


def tracked_files(root: Path = PROJECT_ROOT) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    return sorted(f for f in out.split("\0") if f)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


#: Files of the template written for it rather than copied.
GENERATED = ("README.md", "Makefile", "pyproject.toml", ".github/workflows/classroom.yml")


def template_files(assignment_name: str, root: Path = PROJECT_ROOT) -> dict[str, bytes]:
    """Path -> content of every file of the template repository for one assignment."""
    assignment = find_assignment(assignment_name)
    files: dict[str, bytes] = {}
    for name in tracked_files(root):
        other_assignment = (name.startswith("assignments/")
                            and not name.startswith(f"assignments/{assignment.name}/"))
        if name.startswith(EXCLUDED) or other_assignment or name in GENERATED:
            continue
        files[name] = (root / name).read_bytes()
    workflow = WORKFLOW_TEMPLATE.read_text(encoding="utf-8")
    if "ASSIGNMENT: 00_welcome" not in workflow:
        raise RuntimeError("the classroom template no longer sets ASSIGNMENT as expected")
    extra = {
        ".github/workflows/classroom.yml":
            workflow.replace("ASSIGNMENT: 00_welcome", f"ASSIGNMENT: {assignment.name}"),
        "README.md": README.format(assignment=assignment.name, windows="\n".join(
            "   " + c for c in windows_commands(_text(root / "README.md"), assignment.name))),
        "Makefile": student_makefile(_text(root / "Makefile"), assignment.name),
        "pyproject.toml": student_pyproject(_text(root / "pyproject.toml")),
    }
    files.update({name: text.encode("utf-8") for name, text in extra.items()})
    for name, data in files.items():
        for marker in LEAK_MARKERS:
            if marker.encode() in data:
                raise LeakError(f"{name} contains '{marker}': not publishing")
    return files


#: What runs or installs the grader: a student's repository must hold these as released.
INFRASTRUCTURE = ("autograder/", "llmlab/", ".github/", "Makefile", "pyproject.toml",
                  "environment.yml", "postBuild")
#: Files a run leaves behind that are no change to the infrastructure.
_LEFTOVERS = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info|\.ipynb_checkpoints)(/|$)|\.pyc$")


def _infrastructure(name: str) -> bool:
    return name.startswith(INFRASTRUCTURE) and not _LEFTOVERS.search(name)


def infrastructure_changes(repo: Path, expected: dict[str, bytes]) -> list[str]:
    """The grader, `llmlab`, workflow and setup files of a student's repository that differ
    from the template's `expected` files (changed, missing or added), sorted. Line endings are
    ignored (a Windows checkout may turn them into CRLF)."""
    def same(a: bytes, b: bytes) -> bool:
        return a.replace(b"\r\n", b"\n") == b.replace(b"\r\n", b"\n")

    present = {p.relative_to(repo).as_posix() for p in repo.rglob("*")
               if p.is_file() and ".git" not in p.relative_to(repo).parts[:1]}
    changed = [name for name, data in expected.items() if _infrastructure(name)
               and (name not in present or not same((repo / name).read_bytes(), data))]
    added = [name for name in present - set(expected) if _infrastructure(name)]
    return sorted(changed + added)


def build(assignment_name: str, out: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """Write the template repository to `out` (a new folder) and commit it; return its files."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    files = template_files(assignment_name, root)
    for name, data in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if name not in GENERATED:  # keep the mode of copied files (postBuild is executable)
            target.chmod((root / name).stat().st_mode)
    assignment = find_assignment(assignment_name)
    git = ["git", "-c", "user.name=LLM Lab", "-c", "user.email=llmlab@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=out, check=True)
    subprocess.run([*git, "add", "-A"], cwd=out, check=True)
    subprocess.run([*git, "commit", "-q", "-m", f"LLM Lab template for {assignment.name}"],
                   cwd=out, check=True)
    return sorted(files)
