"""The grader's pure parts, fast: no kernel is started (runs in seconds).

Merging cells, reading notebooks, discovering submissions, the output cap, parsing the guard's
report, config files and the command line's error paths.
"""

import json
from pathlib import Path

import nbformat
import pytest
import toy
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import autograder.results as ag_results
from autograder import cli, course, execute
from autograder.classroom import discover, student_id
from autograder.course import Assignment, assignment_name, write_config
from autograder.guard import Guard
from autograder.notebooks import InvalidNotebook, grade_id, merge, read_notebook
from autograder.results import GradeResult


def _cell(kind, source, gid=None, **meta):
    cell = (new_code_cell if kind == "code" else new_markdown_cell)(source)
    if gid:
        cell.metadata["nbgrader"] = {"grade_id": gid, "schema_version": 3, **meta}
    return cell


def _source():
    return new_notebook(cells=[
        _cell("md", "# title"),
        _cell("code", "import numpy as np", "setup", locked=True),
        _cell("code", "def f():\n    return 1\n", "f_answer", solution=True),
        _cell("code", "assert f() == 1, 'f returns one'", "f_visible", grade=True, locked=True,
              points=1),
        _cell("code", "assert f() > 0, 'f is positive'", "f_hidden", grade=True, locked=True,
              points=2),
    ])


def _release():
    nb = _source()
    nb.cells[2].source = "def f():\n    raise NotImplementedError\n"
    nb.cells[4].source = "# Hidden tests for f run when your notebook is graded.\n"
    return nb


# -- merging ----------------------------------------------------------------------------------
def test_merge_takes_answers_from_the_submission_and_tests_from_the_source():
    sub = _release()
    sub.cells[2].source = "def f():\n    return 2\n"
    sub.cells[3].source = "assert True"  # an edited test
    sub.cells.insert(3, new_code_cell("print('my own cell')"))
    merged = merge(sub, _source(), _release())
    sources = [c.source for c in merged.nb.cells]
    assert "def f():\n    return 2\n" in sources, "the student's answer is kept"
    assert "assert f() == 1, 'f returns one'" in sources and "assert True" not in sources
    assert "assert f() > 0, 'f is positive'" in sources, "hidden tests come from the source"
    assert sources.index("print('my own cell')") == sources.index("def f():\n    return 2\n") + 1
    assert merged.restored == ["f_visible"] and merged.missing_answers == []


def test_merge_restores_deleted_tests_and_falls_back_to_the_stub():
    sub = _release()
    sub.cells = [c for c in sub.cells if grade_id(c) not in ("f_visible", "f_answer")]
    merged = merge(sub, _source(), _release())
    assert [grade_id(c) for c in merged.nb.cells if grade_id(c)] == [
        "setup", "f_answer", "f_visible", "f_hidden"]
    assert "f_visible" in merged.restored and merged.missing_answers == ["f_answer"]
    assert "NotImplementedError" in merged.nb.cells[2].source


def test_merge_strips_nbgrader_metadata_a_student_cell_claims():
    sub = _release()
    fake = _cell("code", "x = 1", "f_visible", grade=True, points=100)  # a duplicate id
    sub.cells.append(fake)
    merged = merge(sub, _source(), _release())
    assert sum(1 for c in merged.nb.cells if grade_id(c) == "f_visible") == 1
    assert len({c.id for c in merged.nb.cells}) == len(merged.nb.cells), "cell ids are unique"


# -- reading ----------------------------------------------------------------------------------
@pytest.mark.parametrize("content, reason", [
    (b"\xff\xfe junk", "not UTF-8"),
    (b"this is not a notebook {", "not valid JSON"),
    (b'{"cells": "no list here"}', "not a notebook"),
    (b'{"cells": [], "nbformat": 3}', "not an nbformat 4"),
])
def test_read_notebook_gives_a_one_line_reason(tmp_path, content, reason):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(InvalidNotebook) as err:
        read_notebook(path)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_read_notebook_reads_a_valid_notebook(tmp_path):
    path = tmp_path / "ok.ipynb"
    nbformat.write(_source(), path)
    assert [grade_id(c) for c in read_notebook(path).cells][1:] == [
        "setup", "f_answer", "f_visible", "f_hidden"]


# -- discovering submissions -------------------------------------------------------------------
def test_discover_finds_one_submission_per_entry(tmp_path):
    source = toy.build(tmp_path / "solutions")
    assignment = Assignment("toy", source)
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    nbformat.write(nbformat.read(source, 4), subs / "alice" / "renamed.ipynb")  # only notebook
    (subs / "bob" / "assignments" / "toy").mkdir(parents=True)
    nbformat.write(nbformat.read(source, 4), subs / "bob" / "assignments" / "toy" / "toy.ipynb")
    (subs / "carol").mkdir()
    (subs / "carol" / "README.md").write_text("nothing here")
    (subs / "alice.ipynb").write_text("{}")  # collides with alice/
    (subs / "dan smith.ipynb").write_text("{}")
    (subs / ".git").mkdir()
    found = {s.student: s for s in discover(subs, assignment)}
    assert set(found) == {"alice", "alice-2", "bob", "carol", "dan_smith"}
    assert found["bob"].path == subs / "bob" / "assignments" / "toy" / "toy.ipynb"
    assert found["carol"].path is None and "no notebook found" in found["carol"].problem
    assert student_id("../evil") == "_evil"


# -- the output cap ----------------------------------------------------------------------------
def _display(chars):
    return {"data": {"text/plain": "x" * chars}, "metadata": {}}


def test_output_chars_counts_streams_displays_and_tracebacks():
    assert execute.output_chars({"text": "abc"}) == 3
    assert execute.output_chars({"data": {"text/plain": "ab", "text/html": "<b>"}}) == 5
    assert execute.output_chars({"data": {"application/json": {"a": 1}}}) == len('{"a": 1}')
    assert execute.output_chars({"traceback": ["line 1", "line 22"]}) == 13


def test_the_cap_stops_display_data_not_just_streams():
    client = execute._CappedClient(new_notebook())
    client.clear_before_next_output = False  # set by nbclient before each cell
    outs = []
    for _ in range(100):
        msg = {"msg_type": "display_data", "content": _display(execute.MAX_OUTPUT_CHARS // 10),
               "header": {"msg_type": "display_data"}, "parent_header": {"msg_id": "m"},
               "metadata": {}}
        client.output(outs, msg, None, 0)
    kept = sum(execute.output_chars(o) for o in outs if o.get("text") != execute.TRUNCATED)
    assert kept <= execute.MAX_OUTPUT_CHARS
    assert [o.get("text") for o in outs].count(execute.TRUNCATED) == 1
    assert outs[-1].get("text") == execute.TRUNCATED


def test_over_cap_counts_what_the_cell_already_holds():
    half = execute.MAX_OUTPUT_CHARS // 2
    held = [new_output("stream", name="stdout", text="y" * half)]
    assert not execute.over_cap(held, _display(half - 1))
    assert execute.over_cap(held, _display(half + 1))


# -- the guard's report ------------------------------------------------------------------------
def test_guard_parse_reads_a_report():
    assert Guard.parse({"status": "ok", "data": {"text/plain": "[]"}}) == []
    assert Guard.parse({"status": "ok", "data": {"text/plain": "['builtins: abs changed']"}}) == [
        "builtins: abs changed"]


@pytest.mark.parametrize("reply, what", [
    (None, "did not report"), ({"status": "error", "ename": "NameError"}, "NameError"),
    ({"status": "ok", "data": {"text/plain": "not python"}}, "malformed"),
    ({"status": "ok", "data": {"text/plain": "{'a': 1}"}}, "malformed"),
    ({"status": "ok", "data": {}}, "malformed")])
def test_guard_parse_treats_a_missing_or_bad_report_as_a_problem(reply, what):
    (problem,) = Guard.parse(reply)
    assert what in problem


def test_guard_names_are_unpredictable():
    assert Guard([], []).name != Guard([], []).name


# -- results -----------------------------------------------------------------------------------
def test_summary_says_what_hidden_tests_are_worth():
    test = ag_results.TestResult("a_visible", 1, 1)
    result = GradeResult("nb.ipynb", "toy", "graded", tests=[test], hidden_points=4)
    assert "Hidden tests worth 4 more points" in result.summary()
    assert GradeResult.from_record(result.record()).hidden_points == 4
    assert "Hidden tests" not in GradeResult("nb.ipynb", "toy", "graded").summary()


def test_assignment_name_comes_from_metadata():
    nb = new_notebook(metadata={"autograder": {"assignment": "01_ml_basics"}})
    assert assignment_name(nb) == "01_ml_basics"
    assert assignment_name(new_notebook()) is None
    assert assignment_name(new_notebook(metadata={"autograder": ["junk"]})) is None


# -- config files ------------------------------------------------------------------------------
def test_write_config_uses_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("grading").mkdir()
    write_config(Path("grading"))
    config = (tmp_path / "grading" / "nbgrader_config.py").read_text(encoding="utf-8")
    assert f"root = {str(tmp_path / 'grading')!r}" in config


def test_a_cached_course_with_a_stale_config_is_repaired(tmp_path):
    source = toy.build(tmp_path / "solutions")
    assignment = Assignment("toy", source)
    cache = tmp_path / "courses"
    root = cache / f"toy-{course.source_digest(assignment)}"
    root.mkdir(parents=True)
    (root / ".complete").write_text("ok\n")
    write_config(root, cache / ".toy-tmp123")  # what older versions left behind
    assert ".toy-tmp123" in (root / "nbgrader_config.py").read_text(encoding="utf-8")
    found = course.course_dir(assignment, cache)
    config = (found.root / "nbgrader_config.py").read_text(encoding="utf-8")
    assert ".toy-tmp123" not in config and f"root = {str(root.resolve())!r}" in config


# -- the command line's error paths -------------------------------------------------------------
def _cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main(list(args))
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_check_of_a_missing_file_exits_non_zero_with_one_line(tmp_path, capsys):
    out = tmp_path / "result.json"
    status, _, err = _cli(capsys, "check", str(tmp_path / "nope.ipynb"), "--json", str(out))
    assert status == 2
    assert err.strip().count("\n") == 0 and "no such file" in err
    assert json.loads(out.read_text(encoding="utf-8"))["status"] == "error"


@pytest.mark.parametrize("args", [
    ("check", "{tmp}"), ("check",), ("check", "x.ipynb", "--bogus"),
    ("grade-class", "{tmp}/missing", "--assignment", "toy", "--out", "o")])
def test_a_folder_or_a_usage_error_exits_non_zero_with_one_line(tmp_path, capsys, args):
    status, _, err = _cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert status == 2
    assert err.strip() and err.strip().count("\n") == 0, err
    assert "Traceback" not in err


def test_check_of_a_file_that_is_not_a_notebook_is_invalid_and_exits_zero(tmp_path, capsys):
    path = tmp_path / "essay.ipynb"
    path.write_text("I did not do the assignment", encoding="utf-8")
    out = tmp_path / "result.json"
    status, printed, err = _cli(capsys, "check", str(path), "--json", str(out))
    assert status == 0, err
    assert "status: invalid" in printed and "not valid JSON" in printed
    assert json.loads(out.read_text(encoding="utf-8"))["status"] == "error"


# -- the feedback page --------------------------------------------------------------------------
def test_maths_become_inline_svg_and_unknown_tex_stays_readable():
    import base64

    from autograder.feedback import math_html

    inline = math_html(r"\hat y = \frac1n \sum_i x_i \ge 0")  # rewritten for mathtext
    assert inline.startswith('<img class="math" alt="\\hat y') and "vertical-align:" in inline
    svg = base64.b64decode(inline.split("base64,")[1].split('"')[0]).decode()
    assert "<svg" in svg and "<path" in svg, "glyphs drawn as paths: no font needed"
    assert "<image" not in svg and 'href="http' not in svg and "<text" not in svg
    assert math_html(r"\lVert x \rVert", display=True).startswith('<img class="math-display"')
    cases = math_html(r"\begin{cases} 1 & x > 0 \\ 0 & \text{else} \end{cases}", display=True)
    assert cases.startswith('<code class="math-display tex"') and "begin{cases}" in cases
    assert math_html("a < b").count("&lt;") == 2  # the alt and title texts are escaped


def test_exercise_titles_come_from_the_task_heading():
    from autograder.feedback import exercise_of, exercise_title

    assert exercise_of("mse_gradient_hidden") == "mse_gradient"
    assert exercise_of("mse_gradient_visible") == "mse_gradient"
    heading = "## Exercise 1 · Mean squared error — `mse` (2 points: 1 visible, 1 hidden)\n\nText"
    assert exercise_title(heading, "mse") == "Exercise 1 · Mean squared error — <code>mse</code>"
    assert exercise_title("Write `add`.", "add") == "<code>add</code>"
    assert exercise_title("# <b>x</b>", "x") == "&lt;b&gt;x&lt;/b&gt;"
