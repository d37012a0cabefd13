import copy
import os
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import toy  # noqa: E402

from autograder.course import Assignment, course_dir  # noqa: E402
from autograder.notebooks import grade_id  # noqa: E402


def _loopback_up() -> None:
    """Bring the loopback interface up if it is down and we may (Linux).

    `unshare -n make test`, the way this suite is run with the network cut, starts in a network
    namespace whose loopback is down; a real offline machine has it up. Jupyter kernels and the
    JupyterLab server talk over 127.0.0.1, so the suite brings it up. Nothing outside the machine
    becomes reachable.
    """
    if not sys.platform.startswith("linux"):
        return
    import fcntl
    import socket
    import struct

    get_flags, set_flags, up = 0x8913, 0x8914, 0x1  # SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH", b"lo", 0)
            flags = struct.unpack("16sH", fcntl.ioctl(s, get_flags, request))[1]
            if not flags & up:
                fcntl.ioctl(s, set_flags, struct.pack("16sH", b"lo", flags | up))
    except OSError:
        pass  # not permitted: the tests that need loopback will say so


_loopback_up()

# The learner's choice of model endpoint (llmlab.llm) never reaches the tests: they always use
# the local model, and nothing here talks to a machine outside this one. Cleared for this process
# and so for every kernel and subprocess it starts.
for _name in ("LLMLAB_LLM_BASE_URL", "LLMLAB_LLM_API_KEY", "LLMLAB_LLM_MODEL"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def toy_solutions(tmp_path_factory) -> Path:
    """A solutions folder holding the toy assignment."""
    folder = tmp_path_factory.mktemp("solutions")
    toy.build(folder)
    return folder


@pytest.fixture(scope="session")
def toy_release(toy_solutions) -> nbformat.NotebookNode:
    """The student version of the toy assignment, as nbgrader generates it."""
    course = course_dir(Assignment("toy", toy_solutions / "toy" / "toy.ipynb"))
    return nbformat.read(course.release, as_version=4)


def submission(release, answers=None, drop=(), edit=None, extra=None):
    """A student notebook: the release with answers filled in, cells dropped or edited."""
    nb = copy.deepcopy(release)
    answers = {**{f"{ex}_answer": code for ex, code in toy.ANSWERS.items()}, **(answers or {})}
    cells = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in drop:
            continue
        if gid in answers:
            cell.source = answers[gid]
        if gid in (edit or {}):
            cell.source = edit[gid]
        cells.append(cell)
        if gid in (extra or {}):
            cells.append(nbformat.v4.new_code_cell(extra[gid]))
    nb.cells = cells
    return nb


# `grade` needs Linux (its sandbox is bubblewrap, on Linux namespaces) and refuses elsewhere: on
# macOS and Windows the tests that grade are skipped, saying why. On Linux they always run.
GRADING_NEEDS_LINUX = (f"grading needs Linux: its sandbox (bubblewrap) uses Linux namespaces, "
                       f"and `grade` refuses to run on {sys.platform}")
GRADING_MODULES = {"test_autograder.py", "test_hostile.py", "test_sandbox.py"}
GRADING_TESTS = {"test_solution_scores_full_marks", "test_mutants_lose_hidden_points",
                 "test_released_notebook_scores_zero_without_crashing",
                 "test_answers_cannot_be_imported_from_llmlab"}


def pytest_collection_modifyitems(config, items):
    if sys.platform.startswith("linux"):
        return
    for item in items:
        if item.path.name in GRADING_MODULES or item.originalname in GRADING_TESTS:
            item.add_marker(pytest.mark.skip(reason=GRADING_NEEDS_LINUX))
