"""The GitHub Classroom template: what students get, and that its workflow's check runs there."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.classroom import _flag_infrastructure
from autograder.results import GradeResult
from autograder.student_repo import LEAK_MARKERS, build, infrastructure_changes, template_files
from llmlab import PROJECT_ROOT


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("template") / "llmlab-01"
    build("01_ml_basics", out)
    return out


def test_template_holds_no_solutions_or_tests(template):
    files = subprocess.run(["git", "ls-files"], cwd=template, capture_output=True, text=True,
                           check=True).stdout.split()
    assert "assignments/01_ml_basics/01_ml_basics.ipynb" in files
    assert "course/01_ml_basics.ipynb" in files and "autograder/cli.py" in files
    assert not any(f.startswith(("solutions/", "tests/", ".ci/")) for f in files)
    for f in files:
        data = (template / f).read_bytes()
        assert not any(m.encode() in data for m in LEAK_MARKERS), f


def test_template_holds_only_its_own_assignment(template):
    assert [p.name for p in (template / "assignments").iterdir()] == ["01_ml_basics"]
    assert sorted(p.name for p in (template / "course").glob("*.ipynb")) == sorted(
        p.name for p in (PROJECT_ROOT / "course").glob("*.ipynb")), "every lecture stays"


def test_template_makefile_and_settings_work_without_solutions_or_tests(template):
    makefile = (template / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", makefile, flags=re.M))
    assert targets == {"setup", "lab", "check", "clean"}
    assert "solutions" not in makefile and "tests/" not in makefile and "pytest" not in makefile
    assert "--dev" not in makefile, "students do not install the test tools"
    dry = subprocess.run(["make", "-n", "check"], cwd=template, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "autograder check assignments/01_ml_basics/01_ml_basics.ipynb" in dry.stdout
    pyproject = tomllib.loads((template / "pyproject.toml").read_text(encoding="utf-8"))
    assert "pytest" not in pyproject["tool"]
    main = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"] == main["project"], "the same pins"


def _commands(markdown: str) -> set[str]:
    blocks = re.findall(r"```(?:bash|powershell)\n(.*?)```", markdown, flags=re.S)
    lines = {line.split("#")[0].strip() for block in blocks for line in block.splitlines()}
    return {line for line in lines if line}


def test_template_readme_install_commands_match_the_main_readme(template):
    readme = (template / "README.md").read_text(encoding="utf-8")
    main = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    ours, theirs = _commands(readme), _commands(main)
    install = {c for c in ours if " check " not in c}
    assert len(install) >= 4 and install <= theirs, install - theirs
    checks = {c for c in ours if " check " in c}
    assert checks == {".venv/bin/python -m autograder check "
                      "assignments/01_ml_basics/01_ml_basics.ipynb",
                      ".venv\\Scripts\\python -m autograder check "
                      "assignments\\01_ml_basics\\01_ml_basics.ipynb"}
    assert {c.replace("01_ml_basics", "00_welcome") for c in checks} <= theirs


def test_template_workflow_is_valid_and_set_to_the_assignment(template):
    workflow = template / ".github" / "workflows" / "classroom.yml"
    assert "ASSIGNMENT: 01_ml_basics" in workflow.read_text()
    proc = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"),
                           "--builtin-schema", "vendor.github-workflows", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


CHEAT = """\
import json, sys
out = sys.argv[sys.argv.index("--json") + 1]
json.dump({"status": "pass", "tests": [{"name": "mse_visible", "score": 3, "max_score": 3}]},
          open(out, "w"))
"""


def _student_clone(template: Path, tmp_path: Path) -> Path:
    """The template as a student pushes it back: a visible test cell deleted (hoping to hide a
    failure) and the grader in their copy replaced by one that reports full points."""
    repo = tmp_path / "student"
    subprocess.run(["git", "clone", "-q", str(template), str(repo)], check=True)
    nb_path = repo / "assignments" / "01_ml_basics" / "01_ml_basics.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") != "mse_visible"]
    nbformat.write(nb, nb_path)
    (repo / "autograder" / "__main__.py").write_text(CHEAT, encoding="utf-8")
    git = ["git", "-c", "user.name=S", "-c", "user.email=s@localhost"]
    subprocess.run([*git, "commit", "-qam", "my answers"], cwd=repo, check=True)
    return repo


def _run_workflow_step(repo: Path, runner: Path, name: str) -> subprocess.CompletedProcess:
    """One `run` step of the repository's own Classroom workflow, as the runner would run it."""
    workflow = yaml.safe_load((repo / ".github/workflows/classroom.yml").read_text())
    step = next(s for s in workflow["jobs"]["check"]["steps"] if s.get("name") == name)
    cwd = step.get("working-directory", str(repo)).replace("${{ runner.temp }}", str(runner))
    env = {**os.environ, **workflow["env"], "RUNNER_TEMP": str(runner),
           "GITHUB_WORKSPACE": str(repo), "GITHUB_OUTPUT": str(runner / "output"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_classroom_workflow_grades_with_the_released_grader(template, tmp_path):
    """The workflow's own commands on a pushed repository whose grader the student edited."""
    repo = _student_clone(template, tmp_path)
    control = tmp_path / "control.json"
    subprocess.run([sys.executable, "-m", "autograder", "check",
                    "assignments/01_ml_basics/01_ml_basics.ipynb", "--json", str(control)],
                   cwd=repo, capture_output=True, text=True, timeout=300)
    assert json.loads(control.read_text())["tests"][0]["score"] == 3, \
        "control: the student's own copy of the grader reports full points"
    runner = tmp_path / "runner"
    runner.mkdir()
    for name in ("The template as released", "Run the visible tests"):
        proc = _run_workflow_step(repo, runner, name)
        assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((runner / "result.json").read_text())
    assert "mse_visible" in [t["name"] for t in data["tests"]], "deleted test was restored"
    assert data["status"] == "fail" and sum(t["score"] for t in data["tests"]) == 0, \
        "the edited grader changed nothing"
    assert "tests_restored" in proc.stdout
    assert (runner / "output").read_text().startswith("result="), "the result goes to Classroom"


def test_edited_infrastructure_is_flagged(template, tmp_path):
    expected = template_files("01_ml_basics")
    assert infrastructure_changes(template, expected) == [], "the template as built is clean"
    repo = _student_clone(template, tmp_path)
    (repo / "llmlab" / "__pycache__").mkdir(exist_ok=True)
    (repo / "llmlab" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"leftover")
    (repo / "course" / "notes.txt").write_text("my notes")
    assert infrastructure_changes(repo, expected) == ["autograder/__main__.py"], \
        "the edited grader is found; caches, notes and the answers are not changes"
    (repo / "llmlab" / "extra.py").write_text("x = 1\n")
    (repo / "Makefile").unlink()
    assert infrastructure_changes(repo, expected) == [
        "Makefile", "autograder/__main__.py", "llmlab/extra.py"], "added and missing files count"
    result = GradeResult("student", "01_ml_basics", "fail")
    _flag_infrastructure(result, repo, "01_ml_basics", expected)
    assert result.flags == ["infrastructure_modified=Makefile,autograder/__main__.py,"
                            "llmlab/extra.py"]
