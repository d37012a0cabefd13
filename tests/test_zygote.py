"""Kernels forked from a zygote (autograder.zygote): the same sandbox as a kernel bubblewrap
starts, one submission per fork, nothing left behind."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from autograder import execute, sandbox, zygote
from autograder.guard import Guard

pytestmark = pytest.mark.slow

# what a kernel reports about itself: everything but its pid must match a plain kernel's
STATE = r"""
import json, os, resource, socket, sys
status = {l.split(':')[0]: l.split(':', 1)[1].strip() for l in open('/proc/self/status')}
print('STATE ' + json.dumps({
    'pid': os.getpid(), 'uid': [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()],
    'status': {k: status[k] for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb',
                                      'NoNewPrivs', 'Seccomp', 'Uid', 'Gid', 'Groups')},
    'limits': [resource.getrlimit(getattr(resource, 'RLIMIT_' + n))
               for n in ('NPROC', 'FSIZE', 'CORE', 'AS')],
    'env': {k: v for k, v in os.environ.items()}, 'cwd': os.getcwd(), 'path': sys.path,
    'host': socket.gethostname(), 'ns': sorted(os.listdir('/proc/self/ns')),
    'fds': sorted(os.listdir('/proc/self/fd')), 'pids': sorted(
        int(p) for p in os.listdir('/proc') if p.isdigit()),
    'sid': os.getsid(0) == os.getpid(), 'tty': os.path.exists('/proc/self/fd/255'),
    'argv': sys.argv[1:], 'dumpable': os.stat('/proc/self/status').st_uid == os.geteuid(),
    'main': sys.modules['__main__'].__name__, 'ag': [m for m in sys.modules
                                                      if m.startswith('autograder')]}))
"""


def _forked() -> sandbox.Isolation:
    isolation = sandbox.available()
    if not isolation.forked:
        pytest.skip(f"kernels are not forked here: {isolation.launch}")
    return isolation


def _run(cells: list[str], isolation: sandbox.Isolation, watched=()) -> list[str]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    runner = execute.Runner(nb, cell_timeout=60, notebook_timeout=120,
                            guard=Guard(watched=list(watched), blocked=["autograder"]),
                            isolation=isolation)
    run_dir = execute.make_run_dir()
    try:
        result = runner.run(list(range(len(cells))), run_dir)
    finally:
        execute.remove_run_dir(run_dir)
    assert all(o.status == "ok" for o in result.outcomes.values()), result.outcomes
    return ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]


def _state(isolation: sandbox.Isolation) -> dict:
    out = _run([STATE], isolation)[0]
    return json.loads(out.split("STATE ", 1)[1])


def test_forked_probe_holds_every_property():
    isolation = sandbox._probe(fork=True)
    assert isolation.level == "full", isolation.describe()
    assert [name for name, _, _ in isolation.held] == list(sandbox.PROPERTIES)
    assert "forked from a zygote" in _forked().describe()


def test_a_forked_kernel_is_a_plain_kernel_but_for_its_pid():
    forked = _forked()
    plain = dataclasses.replace(forked, forked=False)
    a, b = _state(forked), _state(plain)
    assert a["pid"] == 3 and b["pid"] == 2  # bubblewrap's init, (the stub,) the kernel
    assert a["pids"] == [1, 2, 3] and b["pids"] == [1, 2]
    for key in ("pid", "pids"):
        del a[key], b[key]
    for state in (a, b):  # per run: the run folder's name
        run = str(Path(state["cwd"]).parent)
        state["env"] = {k: v.replace(run, "RUN") for k, v in state["env"].items()}
        state["path"] = [p.replace(run, "RUN") for p in state["path"]]
        state["argv"] = [p.replace(run, "RUN") for p in state["argv"]]
        state["cwd"] = state["cwd"].replace(run, "RUN")
    assert a == b
    assert a["status"]["CapEff"] == a["status"]["CapBnd"] == "0000000000000000"
    assert a["status"]["NoNewPrivs"] == "1" and {"0", "1", "2"} <= set(a["fds"])
    assert not a["ag"]  # the zygote's own module is not the kernel's to import


def test_each_submission_gets_a_fresh_fork_and_the_zygote_runs_no_cell():
    forked = _forked()
    mark = ("import numpy, os, random\nprint('SEEN', getattr(numpy, 'AG_MARK', None), os.getpid(),"
            " random.random(), numpy.random.random())\nnumpy.AG_MARK = 'first'\n")
    first = _run([mark], forked, ["numpy"])[0]
    second = _run([mark], forked, ["numpy"])[0]
    assert first.split()[1] == second.split()[1] == "None", (first, second)
    assert first.split()[3:] != second.split()[3:]  # reseeded: not the zygote's random state
    for z in zygote._ZYGOTES.values():  # single-threaded, and its only children are helpers
        assert z.proc is not None
        assert os.listdir(f"/proc/{z.proc.pid}/task") == [str(z.proc.pid)]


def _by_uid(uid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_killing_the_kernel_leaves_nothing_behind():
    forked = _forked()
    mark = "985.5"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, subprocess\nsubprocess.Popen(['setsid', 'sleep', '" + mark + "'])\n"
        "print('PID', os.getpid())")]
    runner = execute.Runner(nb, cell_timeout=60, notebook_timeout=120,
                            guard=Guard(watched=[], blocked=["autograder"]), isolation=forked)
    run_dir = execute.make_run_dir()
    try:
        client = runner._launch(run_dir)
        assert client.km.forked
        client.start_new_kernel_client()
        runner.client = client
        runner._execute(nb.cells[0], 0, 30)
        deadline = time.monotonic() + 10
        while not _sleepers(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sleepers(mark)
        client._cleanup_kernel()  # what grading does: SIGKILL to bubblewrap's process group
        deadline = time.monotonic() + 5
        while _sleepers(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _sleepers(mark), "the kernel's setsid child outlived bubblewrap"
        uid = sandbox.kernel_uid()
        if uid is not None:
            deadline = time.monotonic() + 5
            while _by_uid(uid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _by_uid(uid), "a process of the kernel's uid outlived bubblewrap"
    finally:
        execute.remove_run_dir(run_dir)


def _sleepers(mark: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if mark in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return found


def test_preimports_come_from_the_allow_list():
    mods = zygote.preimports(["torch.nn.functional", "llmlab.gpt", "numpy.random.seed", "os"])
    assert "torch._dynamo" in mods and "numpy.random" in mods and "ipykernel.kernelapp" in mods
    assert not any(m.startswith(("llmlab", "os")) for m in mods)
