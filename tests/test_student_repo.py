"""The GitHub Classroom template: what students get, and that its workflow's check runs there."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from autograder.student_repo import LEAK_MARKERS, build
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


@pytest.mark.slow
def test_classroom_check_step_runs_in_the_template(template, tmp_path):
    """The workflow's own commands, with a student's answer pushed on top of the template."""
    nb_path = template / "assignments" / "01_ml_basics" / "01_ml_basics.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:  # the student deletes a visible test cell, hoping to hide a failure
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "mse_visible":
            nb.cells.remove(cell)
            break
    nbformat.write(nb, nb_path)
    release = tmp_path / "release.ipynb"
    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=template,
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    release.write_text(subprocess.run(
        ["git", "show", f"{first}:assignments/01_ml_basics/01_ml_basics.ipynb"], cwd=template,
        capture_output=True, text=True, check=True).stdout, encoding="utf-8")
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "autograder", "check", str(nb_path),
                           "--release", str(release), "--json", str(result)], cwd=template,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(result.read_text())
    assert "mse_visible" in [t["name"] for t in data["tests"]], "deleted test was restored"
    assert data["status"] == "fail" and sum(t["score"] for t in data["tests"]) == 0
    assert "tests_restored" in proc.stdout
