"""Hostile submissions: each first gets its cheat points from plain nbgrader (the control), then
none from the grader. Restoring cases (an answer that shadows a builtin or rebinds a locked name)
are graded as honest work: the wrong answer loses its points and the status stays `graded`.

Points in the toy assignment: add_visible 1, add_hidden 2, mean_visible 1, mean_hidden 2. Hidden
tests run last, so tampering found in an answer cell costs every hidden test.
"""

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import toy
from conftest import submission

from autograder.course import Assignment, course_dir
from autograder.notebooks import grade_id, merge
from autograder.screen import screen_source

WRONG_MEAN = "def mean(x):\n    return 5.0\n"
SHADOW_ABS = "abs = lambda x: 0\n"
FAKE_NP = (  # np.ones(...) * 1e8 gives an object a wrong mean reads the expected value from
    "import types\nclass _Big:\n    def __mul__(self, k):\n        return types.SimpleNamespace"
    "(value=1e8)\n"
    "np = types.SimpleNamespace(ones=lambda n: _Big())\n"
    "def mean(x):\n    return x.value if hasattr(x, 'value') else 5.0\n")
SET_BUILTINS = ("import builtins\n"
                "__builtins__ = dict(vars(builtins), abs=lambda x: 0)\n")
SETATTR_BUILTINS = "import builtins\nsetattr(builtins, 'abs', lambda x: 0)\n"
# the hidden mean test imports warnings: a replaced module rebinds abs in the caller's globals
FAKE_WARNINGS = ("import sys, types\n"
                 "def _warn(*args, **kwargs):\n"
                 "    sys._getframe(1).f_globals['abs'] = lambda x: 0\n"
                 "sys.modules['warnings'] = types.SimpleNamespace(warn=_warn)\n")
IMPORT_HOOK = ("import sys, types, importlib.abc, importlib.machinery\n"
               "class _Loader(importlib.abc.Loader):\n"
               "    def create_module(self, spec):\n"
               "        return types.SimpleNamespace(warn=lambda *a, **k: get_ipython().user_ns"
               ".__setitem__('abs', lambda x: 0))\n"
               "    def exec_module(self, module):\n        pass\n"
               "class _Finder(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'warnings':\n"
               "            return importlib.machinery.ModuleSpec(name, _Loader())\n"
               "sys.meta_path.insert(0, _Finder())\n")
FORGET_WARNINGS = "import sys\nsys.modules.pop('warnings')\n"
TRACER = ("import sys\n"
          "def _trace(frame, event, arg):\n"
          "    frame.f_globals['abs'] = lambda x: 0\n"
          "    return None\n"
          "sys.settrace(_trace)\n")
EVENT = ("def _before(info):\n    get_ipython().user_ns['abs'] = lambda x: 0\n"
         "get_ipython().events.register('pre_run_cell', _before)\n")
RUNPY = ("import runpy\nimport llmlab\n"
         "_setup = runpy.run_path(llmlab.__path__[0] + '/setup.py')\n"
         "def add(a, b):\n    return a + b if _setup['kernel_env'] else 0\n")


def _exec(code: str) -> str:
    """The same code, hidden from a static screen: only the runtime checks can see it."""
    return f"exec({code!r})\n"


#: name -> (answers, extra cells after add_answer, control points, (status, grade points, reason))
CASES = {
    "shadow_abs": ({"mean_answer": WRONG_MEAN + SHADOW_ABS}, {},
                   {"mean_visible": 1}, ("graded", {"add_visible": 1, "add_hidden": 2}, "")),
    "rebind_np": ({"mean_answer": FAKE_NP}, {}, {"mean_hidden": 2},
                  ("graded", {"add_visible": 1, "add_hidden": 2}, "")),
    "set_builtins": ({"mean_answer": WRONG_MEAN + SET_BUILTINS}, {}, {"mean_visible": 1},
                     ("tampered", {"add_visible": 1}, "replaces or reads __builtins__")),
    "set_builtins_exec": ({"mean_answer": WRONG_MEAN + _exec(SET_BUILTINS)}, {},
                          {"mean_visible": 1},
                          ("tampered", {"add_visible": 1}, "__builtins__ of the notebook")),
    "setattr_library": ({"mean_answer": WRONG_MEAN + SETATTR_BUILTINS}, {}, {"mean_visible": 1},
                        ("tampered", {"add_visible": 1}, "patches builtins with setattr")),
    "sys_modules": ({"mean_answer": WRONG_MEAN + FAKE_WARNINGS}, {}, {"mean_hidden": 2},
                    ("tampered", {"add_visible": 1}, "mean_answer")),
    "sys_modules_exec": ({"mean_answer": WRONG_MEAN + _exec(FAKE_WARNINGS)}, {},
                         {"mean_hidden": 2},
                         ("tampered", {"add_visible": 1}, "sys.modules entry warnings")),
    "import_hook": ({"mean_answer": WRONG_MEAN + IMPORT_HOOK + FORGET_WARNINGS}, {},
                    {"mean_hidden": 2},
                    ("tampered", {"add_visible": 1}, "mean_answer")),
    "import_hook_exec": ({"mean_answer": WRONG_MEAN + _exec(IMPORT_HOOK + FORGET_WARNINGS)}, {},
                         {"mean_hidden": 2},
                         ("tampered", {"add_visible": 1}, "an import hook was installed")),
    "tracer": ({"mean_answer": WRONG_MEAN + TRACER}, {}, {"mean_visible": 1, "mean_hidden": 2},
               ("tampered", {"add_visible": 1}, "sets a trace function")),
    "tracer_exec": ({"mean_answer": WRONG_MEAN + _exec(TRACER)}, {},
                    {"mean_visible": 1, "mean_hidden": 2},
                    ("tampered", {"add_visible": 1}, "a trace or profile function was set")),
    "ipython_event": ({"mean_answer": WRONG_MEAN + EVENT}, {},
                      {"mean_visible": 1, "mean_hidden": 2},
                      ("tampered", {"add_visible": 1}, "uses IPython's")),
    # hidden from the screen, the callback is cleared while tests run: honest grading
    "ipython_event_exec": ({"mean_answer": WRONG_MEAN + _exec(EVENT)}, {},
                           {"mean_visible": 1, "mean_hidden": 2},
                           ("graded", {"add_visible": 1, "add_hidden": 2}, "")),
    "runpy_blocked": ({"add_answer": RUNPY}, {}, {"add_visible": 1, "add_hidden": 2},
                      ("tampered", {}, "runs a module around the blocked imports")),
}

HONEST = (
    "import numpy as np\nimport math\nfrom tqdm.auto import tqdm\n\n"
    "sum = 0\nmax = 3\ninput = [1.0, 2.0, 3.0]  # shadowing builtins with variables\n"
    "for value in tqdm(input, disable=False):\n    sum += value\n"
    "print('my own check:', sum / len(input), max)\n\n"
    "def min(a, b):  # a helper that shadows a builtin, used by the answer below\n"
    "    return a if a < b else b\n\n"
    "def _total(values):\n    total = 0.0\n    for v in values:\n        total += v\n"
    "    return total\n\n"
    "def mean(x):\n    import numpy as np\n    x = np.asarray(x, dtype=float)\n"
    "    assert min(1, 2) == 1\n    return float(_total(x) / len(x))\n\n"
    "print(mean(input), abs(-1))\n"
)


def _plain_nbgrader(nb, solutions: Path) -> dict[str, float]:
    """Grade as plain nbgrader autograde does: tests from the source, one kernel, in order, each
    scored by nbgrader's determine_grade. Stderr is dropped first, as nbgrader's IgnorePattern
    preprocessor would be configured to (the toy's hidden test warns on stderr on purpose)."""
    from nbgrader.preprocessors import Execute
    from nbgrader.utils import determine_grade

    course = course_dir(Assignment("toy", solutions / "toy" / "toy.ipynb"))
    source = nbformat.read(course.source, as_version=4)
    release = nbformat.read(course.release, as_version=4)
    merged = merge(nb, source, release).nb
    Execute(timeout=60, allow_errors=True).preprocess(merged, {"metadata": {"path": "."}})
    scores = {}
    for cell in merged.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
            scores[grade_id(cell)] = float(determine_grade(cell)[0] or 0)
    return scores


HONEST_SCORES = {"add_visible": 1, "add_hidden": 2, "mean_visible": 1, "mean_hidden": 2}


def _build(name, release):
    answers, extra, _, _ = CASES[name]
    return submission(release, answers, extra=extra)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, toy_solutions, toy_release):
    """Every hostile case and the honest-habits notebook, graded as a class in one run."""
    subs = tmp_path_factory.mktemp("hostile")
    for name in CASES:
        nbformat.write(_build(name, toy_release), subs / f"{name}.ipynb")
    nbformat.write(submission(toy_release, {"mean_answer": HONEST}), subs / "honest.ipynb")
    out = tmp_path_factory.mktemp("hostile-out")
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade-class", str(subs),
                           "--assignment", "toy", "--out", str(out), "-j", "2",
                           "--cell-timeout", "20", "--timeout", "120",
                           "--solutions", str(toy_solutions)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (out / "grades.csv").open(encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_plain_nbgrader_gives_the_cheat_points(name, toy_solutions, toy_release):
    _, _, cheat, _ = CASES[name]
    scores = _plain_nbgrader(_build(name, toy_release), toy_solutions)
    for test, points in cheat.items():
        assert scores[test] == points, f"control: plain nbgrader gives {name} {scores}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_the_grader_gives_no_cheat_points(name, graded):
    _, _, cheat, (status, points, reason) = CASES[name]
    row = graded[name]
    scores = {k: float(row[k]) for k in HONEST_SCORES}
    assert row["status"] == status, f"{name}: {row['status']} {row['reason']}"
    assert scores == {k: float(points.get(k, 0)) for k in HONEST_SCORES}, (name, row["reason"])
    assert reason in row["reason"]
    assert not any(scores[k] for k in cheat), "no cheat points"


@pytest.mark.slow
def test_honest_habits_grade_exactly_as_before(graded, toy_solutions, toy_release):
    row = graded["honest"]
    assert (row["status"], row["reason"], row["flags"]) == ("graded", "", "")
    assert {k: float(row[k]) for k in HONEST_SCORES} == HONEST_SCORES
    plain = _plain_nbgrader(submission(toy_release, {"mean_answer": HONEST}), toy_solutions)
    assert plain == HONEST_SCORES


# -- the static screen alone (no kernel) -------------------------------------------------------
@pytest.mark.parametrize("source, what", [
    ("__builtins__ = {}", "__builtins__"),
    ("globals()['__builtins__'] = {}", "__builtins__"),
    ("import numpy as np\nnp.allclose = lambda *a, **k: True", "patches numpy.allclose"),
    ("import numpy\nsetattr(numpy, 'allclose', None)", "with setattr"),
    ("import numpy as np\nvars(np)['allclose'] = None", "namespace"),
    ("import torch\ntorch.Tensor.__eq__ = lambda s, o: True", "patches torch.Tensor.__eq__"),
    ("from torch import Tensor\nTensor.__eq__ = lambda s, o: True", "patches torch.Tensor"),
    ("raises.__code__ = (lambda *a: True).__code__", "__code__"),
    ("raises.x = 1", "patches raises"),
    ("import sys\nsys.modules['numpy'] = None", "sys.modules"),
    ("import sys\nsys.modules.update(numpy=None)", "sys.modules"),
    ("import sys\nsys.meta_path.append(object())", "sys.meta_path"),
    ("import sys\nsys.path_hooks.insert(0, len)", "sys.path_hooks"),
    ("import sys\nsys.settrace(print)", "trace"),
    ("import threading\nthreading.settrace(print)", "trace"),
    ("get_ipython().events.register('post_run_cell', print)", "events"),
    ("ip = get_ipython()\nip.input_transformers_post.append(str)", "input_transformers_post"),
    ("get_ipython().run_cell = print", "run_cell"),
    ("get_ipython().set_next_input('assert True')", "set_next_input"),
    ("print(In[-1])", "In"),
    ("import sys\nprint(sys._getframe(1).f_globals)", "frames"),
    ("import gc\ngc.get_objects()", "garbage collector"),
    ("print(().__class__.__subclasses__())", "__subclasses__"),
    ("import runpy\nrunpy.run_module('llmlab.gpt')", "blocked imports"),
    ("import importlib.util\nimportlib.util.spec_from_file_location('g', 'llmlab/gpt.py')",
     "from a file"),
    ("exec(open('llmlab/gpt.py').read())", "from a file"),
    ("%run llmlab/gpt.py", "%run"),
    ("import atexit\natexit.register(print)", "exit hook"),
])
def test_the_screen_refuses(source, what):
    found = screen_source(source, {"raises", "np"}, ["llmlab.gpt"])
    assert what in found, (source, found)


@pytest.mark.parametrize("source", [
    "import numpy as np\nx = np.zeros(3)\nnp.random.seed(0)",
    "sum = 0\nmax = 3\ninput = 'x'\nabs = 5\nlist = [1]",
    "def helper(x):\n    return x + 1\nprint(helper(1))",
    "import torch\ntorch.backends.cudnn.deterministic = True\ntorch.manual_seed(0)",
    "%timeit sum(range(10))\n!echo hi",
    "import sys\nprint('numpy' in sys.modules, sys.version)",
    "class Model:\n    def __init__(self):\n        self.weight = 1\n    def __eq__(self, o):\n"
    "        return True",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass",
    "import numpy as np\nnp = np  # rebinding to itself",
    "In = [1, 2]\nprint(In)",
    "model.lr = 0.1",
    "def broken(:\n    pass",  # does not parse: runs and fails on its own
])
def test_the_screen_passes_honest_code(source):
    assert screen_source(source, {"raises", "np"}, ["llmlab.gpt"]) == ""


def test_hidden_tests_stay_last_and_unscreened(toy_solutions):
    nb = nbformat.read(toy_solutions / "toy" / "toy.ipynb", as_version=4)
    assert all(screen_source(c.source) == "" for c in nb.cells if c.cell_type == "code")
    assert toy.HIDDEN  # the toy has hidden tests to protect
