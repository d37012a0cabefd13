"""Building the GitHub Classroom template repository for one assignment.

    python -m autograder student-repo --assignment 01_ml_basics --out ../llmlab-01

The template holds what a student needs — the lectures, the released assignments, the `llmlab` and
`autograder` packages (for `check`), the setup files — and the Classroom workflow, set to this
assignment. It never holds `solutions/`, the test suite, or anything with a solution or hidden test
in it: `build` refuses to finish if a file does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from autograder.course import find_assignment
from llmlab import PROJECT_ROOT

#: Tracked paths that stay with the instructors.
EXCLUDED = ("solutions/", "tests/", ".github/", ".ci/", "docs/")
# nbgrader's delimiters, spelled in two parts so that this file does not contain them itself
LEAK_MARKERS = tuple("BEGIN " + what for what in ("SOLUTION", "HIDDEN TESTS"))
WORKFLOW_TEMPLATE = PROJECT_ROOT / ".github" / "templates" / "classroom.yml"

README = """\
# {assignment} — LLM Lab

Your assignment is `assignments/{assignment}/{assignment}.ipynb`; the lectures are in `course/`.

1. `make lab` (first time: installs everything into `.venv`, then opens JupyterLab).
   Windows: `py -3.11 -m venv .venv`, `.venv\\Scripts\\python -m llmlab.setup install`,
   `.venv\\Scripts\\python -m llmlab.setup lab`.
2. Replace each `raise NotImplementedError()` with your answer; run the test cells.
3. Check: `.venv/bin/python -m autograder check assignments/{assignment}/{assignment}.ipynb`
   (visible tests; your instructor's grade adds hidden tests of edge cases).
4. Submit: `git add`, `git commit`, `git push`. GitHub Classroom runs the check on every push and
   shows your points.
"""


class LeakError(RuntimeError):
    """A file bound for students contains a solution or hidden tests."""


def tracked_files(root: Path = PROJECT_ROOT) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    return sorted(f for f in out.split("\0") if f)


def build(assignment_name: str, out: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """Write the template repository to `out` (a new folder) and commit it; return its files."""
    assignment = find_assignment(assignment_name)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    written = []
    for name in tracked_files(root):
        if name.startswith(EXCLUDED) or name == "README.md":
            continue
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((root / name).read_bytes())
        target.chmod((root / name).stat().st_mode)
        written.append(name)
    workflow = WORKFLOW_TEMPLATE.read_text(encoding="utf-8")
    if "ASSIGNMENT: 00_welcome" not in workflow:
        raise RuntimeError("the classroom template no longer sets ASSIGNMENT as expected")
    extra = {
        ".github/workflows/classroom.yml":
            workflow.replace("ASSIGNMENT: 00_welcome", f"ASSIGNMENT: {assignment.name}"),
        "README.md": README.format(assignment=assignment.name),
    }
    for name, text in extra.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
        written.append(name)
    for name in written:
        data = (out / name).read_bytes()
        for marker in LEAK_MARKERS:
            if marker.encode() in data:
                raise LeakError(f"{name} contains '{marker}': not publishing")
    git = ["git", "-c", "user.name=LLM Lab", "-c", "user.email=llmlab@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=out, check=True)
    subprocess.run([*git, "add", "-A"], cwd=out, check=True)
    subprocess.run([*git, "commit", "-q", "-m", f"LLM Lab template for {assignment.name}"],
                   cwd=out, check=True)
    return sorted(written)
