"""The autograder against crafted submissions: one per failure mode, graded as a class and alone.

Points in the toy assignment: add_visible 1, add_hidden 2, mean_visible 1, mean_hidden 2.
"""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import toy
from conftest import submission

import autograder.results as ag_results
from autograder import sandbox
from autograder.grading import Limits, check, grade
from llmlab import PROJECT_ROOT

pytestmark = pytest.mark.slow

HANG = "while True:\n    pass\n"
HANG_IGNORING_SIGINT = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "while True:\n    time.sleep(0.1)\n")
CRASH = "import os\nos._exit(1)\n"
WRONG_ADD = "def add(a, b):\n    return a - b\n"


def _write(folder: Path, name: str, nb) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory, toy_solutions, toy_release):
    """Grade one folder holding a submission for every failure mode; return rows by student."""
    subs = tmp_path_factory.mktemp("submissions")
    rel = toy_release
    _write(subs, "solution.ipynb", nbformat.read(toy_solutions / "toy" / "toy.ipynb", 4))
    _write(subs, "released.ipynb", rel)
    (subs / "notjson.ipynb").write_text("this is not a notebook {", encoding="utf-8")
    (subs / "jsonish.ipynb").write_text('{"cells": "no list here"}', encoding="utf-8")
    (subs / "essay.txt").write_text("I did not do the assignment", encoding="utf-8")
    (subs / "emptyrepo").mkdir()
    (subs / "emptyrepo" / "README.md").write_text("nothing", encoding="utf-8")
    _write(subs, "hangrepo/assignments/toy/toy.ipynb",
           submission(rel, {"add_answer": HANG + toy_add()}))
    _write(subs, "stubborn.ipynb", submission(rel, {"add_answer": HANG_IGNORING_SIGINT}))
    _write(subs, "crash.ipynb", submission(rel, {"mean_answer": CRASH}))
    _write(subs, "deleted.ipynb", submission(rel, drop={"add_visible", "add_hidden"}))
    _write(subs, "edited.ipynb", submission(rel, {"add_answer": WRONG_ADD},
                                            edit={"add_visible": "assert True\n"}))
    _write(subs, "patcher.ipynb", submission(
        rel, {"add_answer": WRONG_ADD}, extra={"add_answer": "import builtins\n"
                                               "builtins.abs = lambda x: 0\n"}))
    _write(subs, "transformer.ipynb", submission(rel, {"add_answer": WRONG_ADD}, extra={
        "add_answer": "get_ipython().input_transformers_post.append(\n"
                      "    lambda lines: [l for l in lines if 'assert' not in l])\n"}))
    _write(subs, "faker.ipynb", submission(rel, {"add_answer": WRONG_ADD}, extra={
        "add_answer": "print('add_visible 1/1 PASS')\nprint('Total: 6 / 6')\n"}))
    _write(subs, "runcell.ipynb", submission(rel, {"add_answer": WRONG_ADD}, extra={
        "add_answer": "get_ipython().run_cell = lambda *args, **kwargs: None\n"}))
    _write(subs, "hog.ipynb", submission(rel, extra={
        "add_answer": "import torch\nhog = bytearray(8 * 1024**3)\n"}))
    _write(subs, "importer.ipynb", submission(rel, {
        "add_answer": "def add(a, b):\n    from llmlab.setup import kernel_env\n"
                      "    return a + b\n"}))
    out = tmp_path_factory.mktemp("grading")
    cmd = [sys.executable, "-m", "autograder", "grade-class", str(subs), "--assignment", "toy",
           "--out", str(out), "-j", "2", "--cell-timeout", "10", "--timeout", "120",
           "--solutions", str(toy_solutions)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (out / "grades.csv").open(encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return out, rows, subs, cmd


def toy_add():
    import toy

    return toy.ANSWERS["add"]


def scores(row) -> dict:
    return {k: float(row[k]) for k in ("add_visible", "add_hidden", "mean_visible", "mean_hidden")}


def test_every_submission_gets_exactly_one_row(graded_class):
    _, rows, _, _ = graded_class
    assert sorted(rows) == sorted([
        "solution", "released", "notjson", "jsonish", "essay", "emptyrepo", "hangrepo",
        "stubborn", "crash", "deleted", "edited", "patcher", "transformer", "faker", "hog",
        "importer", "runcell"])
    for row in rows.values():
        assert row["status"] in ("graded", "timeout", "crashed", "invalid", "tampered", "error")
        assert float(row["max_score"]) == 6
        assert float(row["score"]) == sum(scores(row).values())


def test_solution_scores_full_marks_despite_stderr_warning(graded_class):
    row = graded_class[1]["solution"]
    assert (row["status"], float(row["score"]), row["reason"]) == ("graded", 6, "")


def test_released_notebook_scores_zero(graded_class):
    row = graded_class[1]["released"]
    assert (row["status"], float(row["score"])) == ("graded", 0)


@pytest.mark.parametrize("student, reason", [
    ("notjson", "not valid JSON"), ("jsonish", "not a notebook"), ("essay", "not valid JSON"),
    ("emptyrepo", "no notebook found")])
def test_invalid_submissions(graded_class, student, reason):
    row = graded_class[1][student]
    assert row["status"] == "invalid" and float(row["score"]) == 0
    assert reason in row["reason"]


@pytest.mark.parametrize("student", ["hangrepo", "stubborn"])
def test_hung_cell_costs_only_its_own_tests(graded_class, student):
    row = graded_class[1][student]
    assert row["status"] == "timeout"
    assert scores(row) == {"add_visible": 0, "add_hidden": 0, "mean_visible": 1, "mean_hidden": 2}


def test_kernel_that_ignores_interrupt_is_restarted(graded_class):
    assert "kernel_restarts=1" in graded_class[1]["stubborn"]["flags"]


def test_dead_kernel_keeps_earlier_points(graded_class):
    row = graded_class[1]["crash"]
    assert row["status"] == "crashed"
    assert scores(row) == {"add_visible": 1, "add_hidden": 2, "mean_visible": 0, "mean_hidden": 0}


def test_deleted_tests_are_restored(graded_class):
    row = graded_class[1]["deleted"]
    assert (row["status"], float(row["score"])) == ("graded", 6)
    assert "tests_restored" in row["flags"]


def test_edited_tests_are_restored_and_fail_wrong_answers(graded_class):
    row = graded_class[1]["edited"]
    assert "tests_restored" in row["flags"]
    assert scores(row) == {"add_visible": 0, "add_hidden": 0, "mean_visible": 1, "mean_hidden": 2}


@pytest.mark.parametrize("student, what", [("patcher", "patches builtins.abs"),
                                           ("transformer", "input_transformers_post"),
                                           ("runcell", "run_cell")])
def test_patching_the_grading_environment_is_caught(graded_class, student, what):
    row = graded_class[1][student]
    assert (row["status"], float(row["score"])) == ("tampered", 0)
    assert what in row["reason"]


def test_printed_fake_scores_change_nothing(graded_class):
    row = graded_class[1]["faker"]
    assert row["status"] == "graded"
    assert scores(row) == {"add_visible": 0, "add_hidden": 0, "mean_visible": 1, "mean_hidden": 2}


def test_memory_cap_stops_a_hog_but_not_torch(graded_class):
    row = graded_class[1]["hog"]
    assert (row["status"], float(row["score"])) == ("graded", 6)


def test_answers_cannot_be_imported_from_llmlab(graded_class):
    out, rows, _, _ = graded_class
    row = rows["importer"]
    assert scores(row) == {"add_visible": 0, "add_hidden": 0, "mean_visible": 1, "mean_hidden": 2}
    data = json.loads((out / "results" / "importer.json").read_text(encoding="utf-8"))
    assert "disabled while grading" in data["tests"][0]["message"]


def test_classroom_json_for_every_student(graded_class):
    out, rows, _, _ = graded_class
    for student, row in rows.items():
        data = json.loads((out / "results" / f"{student}.json").read_text(encoding="utf-8"))
        assert set(data) == {"version", "status", "max_score", "tests"} and data["version"] == 1
        assert data["max_score"] == 6
        assert [t["name"] for t in data["tests"]] == list(scores(row))
        assert sum(t["score"] for t in data["tests"]) == float(row["score"])
        for t in data["tests"]:
            assert t["status"] == ("pass" if t["score"] == t["max_score"] else "fail")
            assert t["status"] == "pass" or t["message"], "a failing test says why"
        expected = {"invalid": "error"}.get(row["status"],
                                           "pass" if float(row["score"]) == 6 else "fail")
        assert data["status"] == expected


def test_feedback_is_written_and_never_shows_hidden_tests(graded_class):
    out, rows, _, _ = graded_class
    pages = sorted((out / "feedback").glob("*/toy/toy.html"))
    assert {p.parts[-3] for p in pages} >= {"solution", "released", "crash", "deleted"}
    import toy

    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "BEGIN HIDDEN TESTS" not in html
        for hidden_line in ("add(-1.5, 0.5)", "np.ones(1000) * 1e8"):
            assert hidden_line not in html and hidden_line in "".join(toy.HIDDEN.values())


NOTES = ("My notes: the mean is $\\bar x = \\frac{1}{n}\\sum_{i=1}^{n} x_i$ for $n \\ge 1$.\n\n"
         "$$\\lVert x \\rVert^2 = \\sum_i x_i^2$$\n\n"
         "| term | 中文 |\n| --- | --- |\n| mean | 均值 |\n")


@pytest.fixture(scope="module")
def small_class(tmp_path_factory, toy_solutions, toy_release):
    """A first grade-class into a new folder: a wrong `add` with a markdown note (maths and a
    table) of the student's own, and a correct notebook."""
    subs = tmp_path_factory.mktemp("small-class")
    wrong = submission(toy_release, {"add_answer": "def add(a, b):\n    return abs(a) + b\n"})
    wrong.cells.insert(1, nbformat.v4.new_markdown_cell(NOTES))
    _write(subs, "alice.ipynb", wrong)
    _write(subs, "bob.ipynb", submission(toy_release))
    out = tmp_path_factory.mktemp("small-grading") / "out"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade-class", str(subs),
                           "--assignment", "toy", "--out", str(out), "-j", "2",
                           "--solutions", str(toy_solutions)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_a_first_grade_class_prints_no_sqlalchemy_warning(small_class):
    _, proc = small_class
    assert "SAWarning" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr[-3000:]


def test_feedback_page_works_offline_and_names_every_graded_cell(small_class):
    import html
    import re

    out, _ = small_class
    page = (out / "feedback" / "alice" / "toy" / "toy.html").read_text(encoding="utf-8")
    # nothing fetched from elsewhere: no remote script, stylesheet, import or font
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"']?(https?:)?//",
                         page, re.I)
    assert not re.search(r"(@import|url\()\s*[\"']?(https?:)?//", page, re.I)
    assert "<script" not in page and "mathjax" not in page.lower()
    # maths drawn on the page, tables styled
    assert page.count('src="data:image/svg+xml;base64,') >= 3, "inline and display maths"
    assert "$\\bar x" not in page and "$$" not in page, "no TeX left for a script to typeset"
    assert 'alt="\\bar x = \\frac{1}{n}\\sum_{i=1}^{n} x_i"' in page
    assert "<table>" in page and "th, td {" in page and "均值" in page
    # every graded cell: its exercise, grade_id, points and (if it failed) the reason
    expected = {"add_visible": "1 / 1", "add_hidden": "0 / 2", "mean_visible": "1 / 1",
                "mean_hidden": "2 / 2"}
    rows = re.findall(r'<tr class="(pass|fail)">\s*<td>(.*?)</td>\s*<td><a href="#(\w+)">.*?'
                      r'</a></td>\s*<td>(\w+)</td>\s*<td class="num">(.*?)</td>\s*<td>(.*?)</td>',
                      page, re.S)
    assert {gid: points for _, _, gid, _, points, _ in rows} == expected
    # an exercise is named on its first row
    assert [ex for _, ex, _, _, _, _ in rows] == ["<code>add</code>", "", "<code>mean</code>", ""]
    for status, _, gid, kind, _, reason in rows:
        assert kind == gid.rsplit("_", 1)[1] and f'id="{gid}"' in page
        assert (status, reason) == (("fail", "AssertionError: add must handle negative floats")
                                    if gid == "add_hidden" else ("pass", "passed"))
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert "Total: 4 / 6 points , of which 2 came from hidden tests (worth 4)" in text
    # never the hidden tests' code
    assert "BEGIN HIDDEN TESTS" not in page
    for line in "".join(toy.HIDDEN.values()).splitlines():
        assert " ".join(line.split()) not in text


def test_gradebook_holds_every_graded_score(graded_class):
    from nbgrader.api import Gradebook

    out, rows, _, _ = graded_class
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for student, row in rows.items():
            sub = gb.find_submission("toy", student)
            assert sub.score == pytest.approx(float(row["score"]))


def test_submitted_notebooks_are_kept_where_nbgrader_looks(graded_class):
    """The formgrader counts submissions in submitted/<student>/<assignment>/: every
    submission that was a notebook file is there, byte for byte; nothing for the others."""
    out, rows, subs, _ = graded_class
    kept = {p.parent.parent.name: p for p in (out / "submitted").glob("*/toy/toy.ipynb")}
    assert (kept["solution"].read_bytes() == (subs / "solution.ipynb").read_bytes())
    assert (kept["hangrepo"].read_bytes() ==
            (subs / "hangrepo" / "assignments" / "toy" / "toy.ipynb").read_bytes())
    assert "notjson" in kept  # handed in, though not gradable: nbgrader keeps it too
    assert "essay" not in kept and "emptyrepo" not in kept
    assert set(kept) <= set(rows)


def test_rerun_skips_unchanged_submissions(graded_class):
    out, rows, _, cmd = graded_class
    before = (out / "grades.csv").read_text(encoding="utf-8")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "grades.csv").read_text(encoding="utf-8") == before
    assert "17/17" in proc.stderr  # the progress bar starts complete: nothing was regraded


def _grade_cli(path: Path, solutions: Path, tmp_path: Path, command="grade"):
    out = tmp_path / f"{path.stem}.json"
    cmd = [sys.executable, "-m", "autograder", command, str(path), "--json", str(out)]
    if command == "grade":
        cmd += ["--assignment", "toy", "--solutions", str(solutions)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc, json.loads(out.read_text(encoding="utf-8"))


def test_grade_invalid_notebook_exits_zero_with_error_json(tmp_path, toy_solutions):
    bad = tmp_path / "toy.ipynb"
    bad.write_bytes(b"\x00\x01 binary junk")
    proc, data = _grade_cli(bad, toy_solutions, tmp_path)
    assert proc.returncode == 0
    assert data["status"] == "error" and data["max_score"] == 6
    assert all(t["score"] == 0 and t["message"] for t in data["tests"])
    assert "status: invalid" in proc.stdout


def test_grade_prints_a_line_per_test_with_reasons(tmp_path, toy_solutions, toy_release):
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"add_answer": WRONG_ADD}), path)
    proc, data = _grade_cli(path, toy_solutions, tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert any("FAIL" in line and "add_visible" in line and "add must add two integers" in line
               for line in lines)
    assert any("FAIL" in line and "add_hidden" in line and "negative floats" in line
               for line in lines)
    assert "Total: 3 / 6" in proc.stdout
    assert data["status"] == "fail"


def test_check_runs_visible_tests_only(tmp_path, toy_release):
    path = tmp_path / "toy.ipynb"
    nbformat.write(toy_release, path)
    proc, data = _grade_cli(path, None, tmp_path, command="check")
    assert proc.returncode == 0
    assert [t["name"] for t in data["tests"]] == ["add_visible", "mean_visible"]
    assert data["max_score"] == 2 and sum(t["score"] for t in data["tests"]) == 0
    assert "NotImplementedError" in data["tests"][0]["message"]
    nbformat.write(submission(toy_release), path)
    proc, data = _grade_cli(path, None, tmp_path, command="check")
    assert data["status"] == "pass" and sum(t["score"] for t in data["tests"]) == 2


def test_check_flags_edited_tests(tmp_path, toy_release):
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"add_answer": WRONG_ADD},
                              edit={"add_visible": "assert True\n"}), path)
    proc, data = _grade_cli(path, None, tmp_path, command="check")
    assert "tests_edited" in proc.stdout


def test_check_names_the_assignment_from_metadata_and_counts_hidden_points(tmp_path,
                                                                          toy_release):
    path = tmp_path / "my copy of the homework.ipynb"  # renamed: the file name says nothing
    nbformat.write(submission(toy_release), path)
    proc = subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "— assignment toy" in proc.stdout
    assert "Total: 2 / 2" in proc.stdout
    assert "Hidden tests worth 4 more points" in proc.stdout


@pytest.mark.parametrize("code, state", [(CRASH, "crashed"), (HANG_IGNORING_SIGINT, "timeout")])
def test_check_survives_a_dead_or_hung_kernel_after_a_passed_test(tmp_path, toy_release, code,
                                                                  state):
    # regression: the replayed cells replaced those the test list was collected from (KeyError)
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"mean_answer": code}), path)
    graded = check(path, Limits(cell_timeout=5, timeout=120))
    assert graded.result.state == state, graded.result.summary()
    assert {t.name: t.score for t in graded.result.tests} == {"add_visible": 1, "mean_visible": 0}
    assert "kernel_restarts=1" in graded.result.flags


def test_grade_class_with_relative_out_and_a_stale_out_folder(tmp_path, toy_solutions,
                                                              toy_release):
    # regressions: a relative --out broke feedback (nbgrader resolved it twice); an output
    # folder graded before the solutions changed kept its old source/ and gradebook; the
    # first run printed SQLAlchemy warnings
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(submission(toy_release), subs / "alice.ipynb")
    newer = tmp_path / "newer-solutions"
    toy.build(newer)
    source = nbformat.read(newer / "toy" / "toy.ipynb", as_version=4)
    hidden = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") ==
                  "add_hidden")
    hidden.metadata["nbgrader"]["points"] = 5
    nbformat.write(source, newer / "toy" / "toy.ipynb")
    from nbgrader.api import Gradebook

    for solutions, total in ((toy_solutions, 6), (newer, 9)):
        cmd = [sys.executable, "-m", "autograder", "grade-class", "subs", "--assignment", "toy",
               "--out", "grading/toy", "-j", "1", "--solutions", str(solutions)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Warning" not in proc.stderr, proc.stderr[-3000:]
        out = tmp_path / "grading" / "toy"
        assert (out / "feedback" / "alice" / "toy" / "toy.html").exists()
        with (out / "grades.csv").open(encoding="utf-8") as f:
            (row,) = csv.DictReader(f)
        assert (row["status"], float(row["score"]), float(row["max_score"]), row["flags"]) == (
            "graded", total, total, "")
        with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
            graded = gb.find_submission("toy", "alice")
            assert (graded.score, graded.max_score) == (total, total)
        copied = nbformat.read(out / "source" / "toy" / "toy.ipynb", as_version=4)
        assert sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in copied.cells) == total


def test_every_submission_gets_a_row_even_when_the_grader_fails(tmp_path, toy_solutions,
                                                                toy_release, monkeypatch):
    from autograder import classroom

    def broken_worker(sub, *args):
        if sub.student == "bob":
            raise RuntimeError("worker exploded")
        return classroom.zero_result(sub.student, args[1], "graded", "")

    monkeypatch.setattr(classroom, "_grade_one", broken_worker)
    subs = tmp_path / "subs"
    subs.mkdir()
    for student in ("alice", "bob"):
        nbformat.write(toy_release, subs / f"{student}.ipynb")
    out = tmp_path / "out"
    results = classroom.grade_class(subs, "toy", out, 2, progress=False,
                                    solutions_dir=toy_solutions)
    assert [r.state for r in results] == ["graded", "error"]
    assert "worker exploded" in results[1].reason
    with (out / "grades.csv").open(encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"alice", "bob"} and rows["bob"]["status"] == "error"
    # a score the gradebook has no cell for is flagged, not silently dropped
    course = classroom.course_dir(classroom.find_assignment("toy", toy_solutions))
    ghost = classroom.zero_result("carol", course, "graded", "")
    ghost.tests.append(ag_results.TestResult("ghost_visible", 1.0, 1.0))
    classroom._save(out, course, "carol", ghost, "key")
    assert "not_in_gradebook=ghost_visible" in ghost.flags


def test_cached_course_config_names_its_own_folder(tmp_path, toy_solutions):
    from autograder.course import Assignment, course_dir

    assignment = Assignment("toy", toy_solutions / "toy" / "toy.ipynb")
    course = course_dir(assignment, cache=tmp_path / "courses")  # built here, in a temp folder
    config = (course.root / "nbgrader_config.py").read_text(encoding="utf-8")
    assert f"root = {str(course.root)!r}" in config
    assert ".toy-" not in config, "the config points at the folder it was built in"


def test_a_slow_integrity_check_is_an_error_not_tampering(tmp_path, toy_solutions,
                                                          toy_release, monkeypatch):
    from autograder import execute, grading

    slow_after_first = ("__import__('sys').__dict__.setdefault('_checks', []).append(0) or "
                        "(len(__import__('sys')._checks) > 1 and __import__('time').sleep(30)) or ")

    class SlowGuard(grading.Guard):
        def check_expression(self) -> str:  # every check but the first takes 30 s
            return slow_after_first + super().check_expression()

    monkeypatch.setattr(grading, "Guard", SlowGuard)
    monkeypatch.setattr(execute, "INTEGRITY_TIMEOUT", 2.0)
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release), path)
    result = grade(path, Limits(cell_timeout=20, timeout=120), "toy", toy_solutions).result
    assert result.state == "error", result.summary()
    assert "integrity check did not answer" in result.reason
    assert "tamper" not in result.reason and "altered" not in result.reason
    # the first test was vouched for; none of the later ones score
    assert {t.name: t.score for t in result.tests} == {
        "add_visible": 1, "add_hidden": 0, "mean_visible": 0, "mean_hidden": 0}
    assert all("integrity check did not answer" in t.message for t in result.tests[1:])


def _processes_mentioning(folder: Path) -> list[str]:
    """Command lines of live processes that run in, or name, `folder` (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(cmdline)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_timed_out_worker_leaves_no_kernel_or_run_folder(tmp_path, toy_solutions, toy_release,
                                                        monkeypatch):
    from autograder import classroom

    tmp = tmp_path / "tmp"  # the worker's temp folder: its run folder is made here
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(classroom, "WORKER_MARGIN", -50.0)  # stopped after 10 s, in the hang
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(submission(toy_release, {"add_answer": HANG}), subs / "hang.ipynb")
    results = classroom.grade_class(subs, "toy", tmp_path / "out", 1,
                                    Limits(cell_timeout=60, timeout=60), progress=False,
                                    solutions_dir=toy_solutions)
    assert [(r.state, r.score) for r in results] == [("timeout", 0)]
    assert not list(tmp.glob("ag-*")), "the worker's run folder was left behind"
    assert not _processes_mentioning(tmp), "the worker's kernel was left running"


@pytest.fixture
def loopback_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server.getsockname()[1]
    server.close()


def test_sandbox_hides_secrets_and_blocks_network_and_writes(tmp_path, toy_solutions,
                                                             toy_release, loopback_server):
    # never skipped on Linux: without the sandbox this fails, saying why (tests/test_sandbox.py)
    assert sandbox.available().level == "full", sandbox.available().reason
    probe = (
        "import os, socket\n"
        f"print('solutions:', os.path.exists({str(toy_solutions / 'toy' / 'toy.ipynb')!r}))\n"
        f"print('git:', os.path.exists({str(PROJECT_ROOT / '.git' / 'HEAD')!r}))\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {loopback_server}), timeout=3)\n"
        "    print('network: reached')\n"
        "except OSError:\n    print('network: blocked')\n"
        "try:\n"
        f"    open({str(PROJECT_ROOT / 'pwned.txt')!r}, 'w').write('x')\n"
        "    print('write: allowed')\n"
        "except OSError:\n    print('write: blocked')\n")
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, extra={"add_answer": probe}), path)
    graded = grade(path, Limits(cell_timeout=20, timeout=120), "toy", toy_solutions)
    assert sandbox.available().level == "full", sandbox.available().reason
    assert graded.result.score == 6 and graded.result.state == "graded"
    printed = "".join(o.get("text", "") for c in graded.notebook.cells
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "solutions: False" in printed
    assert "git: False" in printed
    assert "network: blocked" in printed
    assert "write: blocked" in printed and not (PROJECT_ROOT / "pwned.txt").exists()


@pytest.fixture(scope="module")
def torch_toy(tmp_path_factory):
    """The toy assignment with torch in its setup cell, so the guard watches torch too."""
    import toy

    from autograder.course import Assignment, course_dir

    folder = tmp_path_factory.mktemp("torch-solutions")
    nb = toy.notebook()
    next(c for c in nb.cells if c.id == "setup").source = "import numpy as np\nimport torch\n"
    path = folder / "toy" / "toy.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    release = nbformat.read(course_dir(Assignment("toy", path)).release, as_version=4)
    return folder, release


@pytest.mark.parametrize("code, state", [
    # torch.optim imports torch._dynamo, which re-wraps torch.manual_seed: not tampering
    ("w = torch.zeros(2, requires_grad=True)\nopt = torch.optim.Adam([w], lr=0.1)\n"
     "(w.sum() ** 2).backward()\nopt.step()\n", "graded"),
    ("torch.Tensor.__eq__ = lambda self, other: True\n", "tampered"),
    ("import functools\n"
     "torch.allclose = functools.wraps(torch.allclose)(lambda *a, **k: True)\n", "tampered"),
])
def test_guard_tells_torch_internals_from_patching(tmp_path, torch_toy, code, state):
    folder, release = torch_toy
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(release, extra={"add_answer": code}), path)
    result = grade(path, Limits(cell_timeout=30, timeout=120), "toy", folder).result
    assert result.state == state, result.summary()
    assert result.score == (6 if state == "graded" else 0)


# -- warm kernels (grade-class's workers start the next submission's kernel ahead) ------------
LEAKER = ("import os\nLEAKED = 'a secret of the first student'\n"
          "for _p in ('leak.txt', '/tmp/leak.txt', os.path.expanduser('~/leak.txt')):\n"
          "    open(_p, 'w').write('leak')\n"
          "os.environ['AG_LEAK'] = '1'\n")
# full marks only in a kernel that shows nothing of the leaker's: no global, file or variable
READER = ("import os\n_seen = 'LEAKED' in globals() or 'AG_LEAK' in os.environ or any(\n"
          "    os.path.exists(p) for p in ('leak.txt', '/tmp/leak.txt',\n"
          "                                os.path.expanduser('~/leak.txt')))\n"
          "def add(a, b):\n    return a - b if _seen else a + b\n")


def test_a_warm_kernel_serves_one_student_only(tmp_path, toy_solutions, toy_release,
                                              monkeypatch):
    from autograder import execute

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(execute.tempfile, "tempdir", None)  # re-read TMPDIR
    pool = execute.KernelPool()
    monkeypatch.setattr(execute, "POOL", pool)
    taken, take = [], pool.take
    monkeypatch.setattr(pool, "take", lambda key: taken.append(take(key)) or taken[-1])
    graded = {}
    for i, (name, answer) in enumerate([("leaker", LEAKER + toy_add()), ("reader", READER),
                                        ("again", READER)]):
        pool.ahead = i < 2  # no kernel is started ahead for the last one
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(submission(toy_release, {"add_answer": answer}), path)
        graded[name] = grade(path, Limits(cell_timeout=30, timeout=120), "toy",
                             toy_solutions).result
    assert taken[0] is None and taken[1] is not None and taken[2] is not None, \
        "the second and third submissions ran in kernels started ahead"
    assert taken[1] is not taken[2] and taken[1].run_dir != taken[2].run_dir
    assert taken[1].guard.name != taken[2].guard.name, "each warm kernel has a guard of its own"
    for name in ("leaker", "reader", "again"):
        result = graded[name]
        assert (result.state, result.score) == ("graded", 6), result.summary()
    assert pool.spare is None
    zygotes = set(tmp.glob("ag-zygote-*"))  # this process's fork server: lives until it stops
    assert not set(tmp.glob("ag-*")) - zygotes, "a run folder was left behind"
    from autograder import zygote

    zygote.close_all()
    assert not list(tmp.glob("ag-*")), "a stopped zygote leaves its folder behind"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_a_stopped_worker_takes_its_warm_kernel_along(tmp_path, toy_solutions, toy_release,
                                                     monkeypatch):
    from autograder import classroom

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    # stopped after 40 s, in the hang (a fresh worker's start counts too: it may be slow)
    monkeypatch.setattr(classroom, "WORKER_MARGIN", -60.0)
    subs = tmp_path / "subs"
    subs.mkdir()
    # one worker: while `a_hang` hangs, the kernel for `b_leak` is ready; then a new worker
    nbformat.write(submission(toy_release, {"add_answer": HANG}), subs / "a_hang.ipynb")
    nbformat.write(submission(toy_release, {"add_answer": LEAKER + toy_add()}),
                   subs / "b_leak.ipynb")
    nbformat.write(submission(toy_release, {"add_answer": READER}), subs / "c_read.ipynb")
    results = classroom.grade_class(subs, "toy", tmp_path / "out", 1,
                                    Limits(cell_timeout=100, timeout=100), progress=False,
                                    solutions_dir=toy_solutions, feedback=False)
    assert [(r.state, r.score) for r in results] == [("timeout", 0), ("graded", 6),
                                                      ("graded", 6)], results
    assert not list(tmp.glob("ag-*")), "a run folder was left behind"
    assert not _processes_mentioning(tmp), "a kernel was left running"


def test_bench_builds_correct_unanswered_and_wrong_submissions(tmp_path, toy_solutions):
    from autograder.bench import WRONG_ANSWER, build_batch
    from autograder.course import find_assignment

    names = build_batch(find_assignment("toy", toy_solutions), 6, tmp_path / "subs",
                        mutants_dir=tmp_path / "no-mutants")
    assert [n.split("-", 1)[1] for n in names] == ["correct", "release", "wrong-add_answer"] * 2
    answers = {n: {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in
                   nbformat.read(tmp_path / "subs" / f"{n}.ipynb", as_version=4).cells}
               for n in names}
    assert answers[names[0]]["add_answer"] == toy.ANSWERS["add"]
    assert "NotImplementedError" in answers[names[1]]["add_answer"]
    assert answers[names[2]]["add_answer"] == WRONG_ANSWER
    assert answers[names[2]]["mean_answer"] == toy.ANSWERS["mean"]
