"""The sandbox, measured from inside a graded kernel (crafted submissions, as in test_hostile.py).

Linux only: `grade` refuses elsewhere (tested below with a faked platform). On Linux these tests
never skip: without a working sandbox (bubblewrap missing, user namespaces restricted) they fail
and say how to get one.

Points in the toy assignment: add_visible 1, add_hidden 2, mean_visible 1, mean_hidden 2.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import submission

from autograder import sandbox
from autograder.grading import Limits, grade
from llmlab import PROJECT_ROOT

pytestmark = pytest.mark.slow  # skipped off Linux (conftest.GRADING_NEEDS_LINUX says why)

CANARY = "AG_TEST_CANARY_SECRET"
SLEEP_MARK = "987.125"  # `sleep 987.125`: the double-forked child's command line, found in /proc
# Runs inside the graded kernel: measures and prints one line "SANDBOX {...}".
PROBE = r"""
import json, os
def _measure():
    found = {}
    points = []
    for line in open('/proc/self/mountinfo'):
        p = line.split()[4].replace('\\040', ' ')
        if p not in points:
            points.append(p)
    writable = []
    for p in points + EXTRA:
        if p == '/proc' or p.startswith(('/proc/', '/dev/pts')) or p in DEVICES:
            continue
        try:
            with open(os.path.join(p, '.ag-write-probe'), 'w') as f:
                f.write('x')
            writable.append(p)
            os.unlink(os.path.join(p, '.ag-write-probe'))
        except OSError:
            pass
    with open('/dev/shm/ag-private-probe', 'w') as f:
        f.write('x')
    found['writable'] = writable
    found['mounts'] = points
    found['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    found['pid'] = os.getpid()
    found['env'] = sorted(os.environ)
    found['uid'] = [os.getuid(), os.geteuid()]
    found['uid_map'] = open('/proc/self/uid_map').read().split()
    found['caps'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Cap')]
    if os.fork() == 0:  # a double-forked child in a session of its own
        os.setsid()
        if os.fork() == 0:
            os.execvp('sleep', ['sleep', MARK])
        os._exit(0)
    os.wait()
    return found
print('SANDBOX ' + json.dumps(_measure()))
"""
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
# writes a file far past the file-size limit (sparse: no disk or memory is used without it)
HUGE_FILE = ("with open('huge.bin', 'wb') as f:\n    f.seek(8 * 1024**3)\n    f.write(b'x')\n")
FORK_BOMB = ("import os, time\nwhile True:\n    try:\n        os.fork()\n"
             "    except OSError:\n        time.sleep(600)\n")


def _require_sandbox() -> sandbox.Isolation:
    isolation = sandbox.available()
    assert isolation.level == "full", (
        "the grading sandbox does not fully work on this machine, so grading is not isolated: "
        f"{isolation.reason}. {sandbox.INSTALL_HINT}; as a non-root user it also needs "
        "unprivileged user namespaces (Ubuntu 24.04: sudo sysctl -w "
        "kernel.apparmor_restrict_unprivileged_userns=0)")
    return isolation


def _printed(nb, prefix: str) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):]
    raise AssertionError(f"no line starting {prefix!r} in the graded notebook")


def _processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def _wait_gone(marker: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def test_tmpfs():
    """A tmpfs mounted outside the temp folders (root only; else every mount is enumerated)."""
    if os.geteuid() != 0:
        yield None
        return
    (PROJECT_ROOT / "build").mkdir(exist_ok=True)
    point = Path(tempfile.mkdtemp(prefix="sandbox-tmpfs-", dir=PROJECT_ROOT / "build"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)
        point.rmdir()


def test_every_property_is_measured_and_reported():
    isolation = _require_sandbox()
    assert [name for name, _, _ in isolation.held] == list(sandbox.PROPERTIES)
    text = isolation.describe()
    for name in sandbox.PROPERTIES:
        assert f"{name} yes" in text, text
    assert isolation.flags == []


def test_missing_bubblewrap_says_how_to_install_it(monkeypatch):
    real = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda t: None if t == "bwrap" else real(t))
    sandbox.available.cache_clear()
    try:
        isolation = sandbox.available()
    finally:
        monkeypatch.undo()
        sandbox.available.cache_clear()
    assert isolation.level == "none" and isolation.flags == ["isolation_none"]
    assert "apt-get install bubblewrap" in isolation.reason


def test_grade_refuses_off_linux(tmp_path, toy_release, monkeypatch, capsys):
    from autograder.cli import main

    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release), path)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main() sets a SIGTERM handler
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["grade", str(path)]) == 2
    assert "needs Linux" in capsys.readouterr().err


def test_kernel_sees_a_read_only_private_world(tmp_path, toy_solutions, toy_release,
                                              test_tmpfs, monkeypatch):
    """Every mount read-only but the kernel's private ones, its own processes only, the
    allow-listed environment, a non-root uid, no capabilities; a double-forked `setsid` child
    ends with grading; a huge file stops at the file-size limit with a reason in the row."""
    _require_sandbox()
    monkeypatch.setenv(CANARY, "the grader's secret")
    extra = [str(PROJECT_ROOT), str(PROJECT_ROOT / ".cache"), sys.prefix,
             *([str(test_tmpfs)] if test_tmpfs else [])]
    probe = (f"EXTRA = {extra!r}\nDEVICES = {DEVICES!r}\nMARK = {SLEEP_MARK!r}\n" + PROBE)
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"mean_answer": HUGE_FILE + "def mean(x):\n"
                                                           "    return 2.0\n"},
                              extra={"add_answer": probe}), path)
    graded = grade(path, Limits(cell_timeout=30, timeout=180), "toy", toy_solutions)
    result = graded.result
    found = json.loads(_printed(graded.notebook, "SANDBOX "))
    run = next(p for p in found["mounts"] if p.endswith("/sock")).rsplit("/", 1)[0]

    # files: the only writable places are the kernel's own tmpfs folders and its socket folder
    assert sorted(found["writable"]) == sorted(
        ["/tmp", "/var/tmp", "/dev/shm", f"{run}/work", f"{run}/home", f"{run}/sock"])
    for point in extra:
        assert point not in found["writable"]
    if test_tmpfs:
        assert str(test_tmpfs) in found["mounts"] and not list(test_tmpfs.iterdir())
    assert not Path("/dev/shm/ag-private-probe").exists()  # its /dev/shm was its own
    # processes: its own PID namespace; the double-forked child did not outlive grading
    assert found["pid"] <= 3 and len(found["pids"]) <= 4, found["pids"]
    assert not _wait_gone(SLEEP_MARK, 5), "a setsid child of the kernel outlived grading"
    # environment: the allow-list and what the kernel spec sets, never the grader's own
    assert CANARY not in found["env"]
    spec_env = {"TIKTOKEN_CACHE_DIR"}  # llmlab.setup.kernel_env()
    own = {"PWD", "LC_CTYPE",  # bubblewrap's --chdir, Python's UTF-8 locale coercion
           "MPLBACKEND", "PYDEVD_USE_FRAME_EVAL", "CLICOLOR", "CLICOLOR_FORCE", "PAGER",
           "GIT_PAGER", "TERM", "FORCE_COLOR"}  # what ipykernel sets for itself
    allowed = set(sandbox.ALLOWED_ENV) | spec_env | own
    assert set(found["env"]) <= allowed, set(found["env"]) - allowed
    assert "JPY_PARENT_PID" not in found["env"] and "TIKTOKEN_CACHE_DIR" in found["env"]
    # user: not root, inside or outside; no capabilities
    assert 0 not in found["uid"]
    if found["uid_map"] == ["0", "0", "4294967295"]:  # no user namespace: the uid is the host's
        assert os.geteuid() == 0  # the grader is root: the kernel got a uid of its own
    else:  # a user namespace of an unprivileged grader maps only the grader's own uid
        assert os.geteuid() != 0
    assert all(int(c, 16) == 0 for c in found["caps"]), found["caps"]
    # the huge file: the answer cell stopped at the limit, its tests say why
    scores = {t.name: (t.score, t.message) for t in result.tests}
    assert scores["add_visible"][0] == 1 and scores["add_hidden"][0] == 2, result.summary()
    assert scores["mean_visible"][0] == 0 and scores["mean_hidden"][0] == 0
    assert "File too large" in scores["mean_visible"][1], scores["mean_visible"]
    assert result.state == "graded", result.summary()
    assert "isolated (bubblewrap)" in result.isolation


def test_fork_bomb_is_stopped_by_the_process_limit(tmp_path, toy_solutions, toy_release,
                                                   monkeypatch):
    isolation = _require_sandbox()
    assert dict((n, ok) for n, ok, _ in isolation.held)["limits"]  # or the bomb would be real
    tmp = tmp_path / "tmp"  # the run folder is made here: its processes are found by name
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"add_answer": FORK_BOMB}), path)
    started = time.monotonic()
    result = grade(path, Limits(cell_timeout=15, timeout=120), "toy", toy_solutions).result
    assert time.monotonic() - started < 110
    assert result.state == "timeout", result.summary()
    assert result.reason
    scores = {t.name: t.score for t in result.tests}
    assert scores == {"add_visible": 0, "add_hidden": 0, "mean_visible": 1, "mean_hidden": 2}
    assert all(t.message for t in result.tests if t.score == 0)
    assert not _wait_gone(str(tmp), 5), "the fork bomb's processes outlived grading"


def test_sandbox_dies_with_the_grader(tmp_path, toy_solutions, toy_release):
    """SIGKILL the grader mid-notebook: its kernel and the kernel's setsid child end too."""
    _require_sandbox()
    mark = "986.25"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            f"    os.execvp('sleep', ['sleep', {mark!r}])\n"
            "def add(a, b):\n    return a + b\ntime.sleep(600)\n")
    path = tmp_path / "toy.ipynb"
    nbformat.write(submission(toy_release, {"add_answer": code}), path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(path),
                             "--assignment", "toy", "--solutions", str(toy_solutions),
                             "--cell-timeout", "300"], env={**os.environ, "TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not _processes(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes(mark), "the kernel never started its child"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert not _wait_gone(mark, 5), "the kernel's child outlived the grader"
        assert not _wait_gone(str(tmp), 5), "the kernel outlived the grader"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_uid_mapped_reads_the_user_namespaces_map(tmp_path):
    # a root whose namespace maps only itself (a rootless container, `unshare -r`) cannot hand
    # files to another uid: the kernel then keeps the grader's uid instead of failing in chown
    only_root = tmp_path / "uid_map"
    only_root.write_text("         0       1000          1\n")
    assert sandbox.uid_mapped(0, only_root) and not sandbox.uid_mapped(60001, only_root)
    everything = tmp_path / "uid_map_init"
    everything.write_text("         0          0 4294967295\n")
    assert sandbox.uid_mapped(60001, everything)
    assert sandbox.uid_mapped(60001, tmp_path / "missing")
