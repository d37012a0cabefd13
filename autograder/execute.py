"""Executing a notebook cell by cell so that one bad cell costs only what it affects.

nbgrader's own executor runs the notebook in one go: a hung cell or a dead kernel loses the whole
notebook. Here each code cell runs with its own time limit. After a hang the kernel gets
`INTERRUPT_GRACE` seconds to answer a no-op (no interrupt is sent) and is restarted if it does
not; after a crash it is restarted. In both cases the cells that had succeeded are replayed
silently so later, unaffected tests still run. A notebook time limit bounds the total.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode

from autograder import sandbox, zygote
from autograder.guard import Guard, bound_names
from autograder.notebooks import is_instructor_cell

#: Characters of output a single cell may keep before the rest is dropped (protects the
#: grader's memory).
MAX_OUTPUT_CHARS = 200_000
MAX_RESTARTS = 3
INTERRUPT_GRACE = 5.0  # seconds a kernel gets to answer after an interrupt
INTEGRITY_TIMEOUT = 10.0  # seconds the guard gets to report before a test cell


@dataclass
class CellOutcome:
    """How one cell ended: ok, error, timeout, died (kernel crashed), or skipped."""

    status: str
    ename: str = ""
    evalue: str = ""
    note: str = ""


@dataclass
class Execution:
    outcomes: dict[int, CellOutcome] = field(default_factory=dict)
    restarts: int = 0
    crashed: bool = False
    timed_out: bool = False  # the notebook time limit was reached
    tampering: list[str] = field(default_factory=list)
    unverified: str = ""  # why the integrity check could not vouch for the tests from here on
    seconds: float = 0.0
    #: seconds the notebook's own cells took (replays too): the lower bound of grading it;
    #: `seconds` minus this is the grader's part (kernel start, integrity checks)
    cell_seconds: float = 0.0


class _SandboxedKernelManager(AsyncKernelManager):
    """Launches the kernel through `sandbox.wrap` under the configured policy (None: none).
    With `preimport` set (the sandbox probe passed in a forked kernel), bubblewrap builds the
    same sandbox around a stub, and the kernel is a fresh fork of this process's zygote for
    those modules that enters it (autograder.zygote)."""

    policy: sandbox.Policy | None = None
    preimport: list[str] | None = None
    forked = False  # this kernel is a fork of a zygote

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.policy is None:
            return cmd
        # the connection file is written by now
        self.policy.spec_env = dict(self.kernel_spec.env or {}) if self.kernel_spec else {}
        self.forked = False
        if self.preimport is not None and cmd[1:3] == ["-m", "ipykernel_launcher"] and \
                os.path.realpath(cmd[0]) == os.path.realpath(sys.executable):
            self.policy.prepare()
            try:
                stub, _ = zygote.get(self.policy.spec_env, self.preimport, cmd[0]).spawn(
                    self.policy, cmd[2], cmd[3:])
            except Exception:  # noqa: BLE001 - the zygote is gone: bubblewrap starts this one
                return sandbox.wrap(cmd, self.policy)
            self.forked = True
            return self.policy.argv(stub)
        return sandbox.wrap(cmd, self.policy)


TRUNCATED = "\n[output truncated by the grader]\n"


def output_chars(output: dict) -> int:
    """Characters an output (or an iopub message's content) holds: stream text, every entry of
    a display / result bundle, an error's traceback."""
    chars = len(output.get("text", "") or "")
    for value in (output.get("data") or {}).values():
        chars += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    return chars + sum(len(line) for line in output.get("traceback") or [])


def over_cap(outputs: list[dict], content: dict) -> bool:
    """True if a cell holding `outputs` must not take a new output with `content`."""
    return sum(output_chars(o) for o in outputs) + output_chars(content) > MAX_OUTPUT_CHARS


class _CappedClient(NotebookClient):
    """An nbclient that caps what each cell keeps (stream text, displays, results) at
    MAX_OUTPUT_CHARS; past the cap one truncation note is added and the rest is dropped."""

    def output(self, outs, msg, display_id, cell_index):
        if outs and outs[-1].get("text") == TRUNCATED:
            return None
        if over_cap(outs, msg["content"]):
            outs.append(nbformat.v4.new_output("stream", name="stderr", text=TRUNCATED))
            return None
        return super().output(outs, msg, display_id, cell_index)


class Runner:
    """Runs the code cells of `nb` in the order given, recording one outcome per cell."""

    def __init__(self, nb: NotebookNode, *, cell_timeout: float, notebook_timeout: float,
                 guard: Guard | None, isolation: sandbox.Isolation | None = None,
                 hidden_paths: list[Path] | None = None, memory_mb: int | None = None,
                 screened: dict[int, str] | None = None):
        self.nb = nb
        self.screened = screened or {}  # cell index -> what the static screen found there
        self.cell_timeout = cell_timeout
        self.notebook_timeout = notebook_timeout
        self.guard = guard
        self.isolation = isolation or sandbox.Isolation("none", "not requested")
        self.hidden_paths = hidden_paths or []
        self.memory_mb = memory_mb
        self.client: _CappedClient | None = None
        self._replies: dict[int, dict] = {}
        self.cell_seconds = 0.0  # time spent in the notebook's own cells (see Execution)
        self._warm_dir: Path | None = None  # the run folder of an adopted warm kernel

    # -- kernel lifecycle ------------------------------------------------------------------
    def _launch(self, run_dir: Path) -> _CappedClient:
        """Start a kernel process under the policy (not yet waited for)."""
        km = _SandboxedKernelManager(kernel_name="python3")
        env = dict(os.environ)  # bubblewrap's; the kernel gets only the policy's allow-list
        if self.isolation.level != "none":
            policy = sandbox.Policy(run_dir, self.hidden_paths, self.memory_mb,
                                    sandbox.kernel_uid())
            km.policy = policy
            if self.isolation.forked:
                km.preimport = zygote.preimports(self.guard.watched if self.guard else [])
            km.transport = "ipc"  # the kernel's network namespace is not the grader's
            km.ip = str(policy.sockets / "k")
            km.connection_file = str(run_dir / "kernel.json")
        client = _CappedClient(self.nb, km=km, timeout=int(self.cell_timeout), allow_errors=True,
                               interrupt_on_timeout=False, kernel_name="python3",
                               shutdown_kernel="immediate", iopub_timeout=10,
                               resources={"metadata": {"path": str(run_dir / "work")}})
        # the kernel process's own log lines (not cell output) would only clutter the report
        client.start_new_kernel(cwd=str(run_dir / "work"), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        return client

    def _start(self, run_dir: Path) -> None:
        client = self._launch(run_dir)
        client.on_cell_executed = self._record_reply
        client.start_new_kernel_client()
        self.client = client
        if self.guard is not None:
            self._run_code(self.guard.startup_code(), self.cell_timeout)

    def pool_key(self) -> tuple:
        """What a kernel started ahead must share with this run's to stand in for it."""
        guard = (tuple(self.guard.watched), tuple(self.guard.blocked)) if self.guard else None
        return (self.isolation.level, tuple(str(p) for p in self.hidden_paths), self.memory_mb,
                guard)

    def _adopt(self, warm: WarmKernel) -> bool:
        """Take over a kernel started ahead (its guard installed before any student code ran);
        False if it is not ready, and then it is shut down."""
        try:
            assert warm.client.kc is not None
            # answered after the guard's startup code: shell requests are handled in order
            run_sync(warm.client.kc.wait_for_ready)(timeout=warm.client.startup_timeout)
        except Exception:  # a kernel that died or never came up: start one the usual way
            warm.close()
            return False
        warm.client.kc.allow_stdin = False
        warm.client.nb = self.nb
        warm.client.on_cell_executed = self._record_reply
        self.client, self.guard = warm.client, warm.guard
        self._warm_dir = warm.run_dir
        return True
    def _stop(self) -> None:
        if self.client is not None and self.client.km is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:  # the kernel may already be gone; nothing more to free
                pass
        self.client = None

    def _record_reply(self, cell, cell_index, execute_reply):
        self._replies[cell_index] = execute_reply.get("content", {}) if execute_reply else {}

    def _run_code(self, code: str, timeout: float) -> NotebookNode:
        """Run grader code (not part of the notebook) and return its cell with outputs."""
        assert self.client is not None
        cell = nbformat.v4.new_code_cell(source=code)
        self.client.timeout = max(1, math.ceil(timeout))
        self.nb.cells.append(cell)  # nbclient writes the executed cell back by index
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
        return cell

    def _responsive(self) -> bool:
        try:
            self._run_code("pass", INTERRUPT_GRACE)
            return True
        except (CellTimeoutError, DeadKernelError):
            return False

    # -- the run -----------------------------------------------------------------------------
    def run(self, order: list[int], run_dir: Path) -> Execution:
        result = Execution()
        started = time.monotonic()
        deadline = started + self.notebook_timeout
        succeeded: list[int] = []
        try:
            warm = POOL.take(self.pool_key()) if POOL is not None else None
            if warm is None or not self._adopt(warm):
                self._start(run_dir)
            if POOL is not None:  # the next submission's kernel starts while this one runs
                POOL.prepare(self)
            for index in order:
                cell = self.nb.cells[index]
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = deadline - time.monotonic()
                if result.tampering:
                    result.outcomes[index] = CellOutcome(
                        "skipped", note="not run: the grading environment was altered")
                    continue
                if result.timed_out or remaining <= 1 or self.client is None:
                    why = ("the notebook time limit was reached" if result.timed_out or
                           remaining <= 1 else "the kernel could not be restarted")
                    result.timed_out = result.timed_out or remaining <= 1
                    result.outcomes[index] = CellOutcome("skipped", note=f"not run: {why}")
                    continue
                if result.unverified:
                    result.outcomes[index] = CellOutcome(
                        "skipped", note="not counted: the integrity check did not answer")
                    continue
                if index in self.screened:  # found before it ran: it never runs
                    result.tampering.append(self.screened[index])
                    result.outcomes[index] = CellOutcome(
                        "skipped", note="not run: the grading environment was altered")
                    continue
                is_test = bool(cell.metadata.get("nbgrader", {}).get("grade"))
                if self.guard is not None and is_test:
                    self._ask_guard(result, remaining, self.guard.check_expression())
                    if result.tampering or result.unverified:
                        result.outcomes[index] = CellOutcome("skipped", note=(
                            "not run: the grading environment was altered" if result.tampering
                            else "not counted: the integrity check did not answer"))
                        continue
                outcome = self._execute(cell, index, min(self.cell_timeout, remaining))
                if outcome.status == "timeout" and self.cell_timeout > remaining:
                    result.timed_out = True
                    outcome.note = "the notebook time limit was reached while this cell ran"
                if outcome.status != "died" and self._after_locked(result, index, is_test):
                    outcome = CellOutcome(  # the environment changed while the test ran
                        "skipped", note="not counted: the grading environment was altered")
                result.outcomes[index] = outcome
                if outcome.status == "ok":
                    succeeded.append(index)
                elif outcome.status in ("timeout", "died"):
                    result.crashed |= outcome.status == "died"
                    if outcome.status == "died" or not self._responsive():
                        self._restart(result, succeeded, deadline, run_dir)
        finally:
            self._stop()
            if self._warm_dir is not None:
                remove_run_dir(self._warm_dir)
            result.seconds = time.monotonic() - started
            result.cell_seconds = self.cell_seconds
        return result

    def _execute(self, cell: NotebookNode, index: int, timeout: float) -> CellOutcome:
        assert self.client is not None
        self._replies.pop(index, None)
        self.client.timeout = max(1, math.ceil(timeout))
        hidden = cell.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_hidden")
        started = time.monotonic()
        try:
            self.client.execute_cell(cell, index, store_history=not hidden)
        except CellTimeoutError:
            return CellOutcome("timeout", "TimeoutError",
                               f"the cell ran longer than {timeout:.0f} s and was stopped")
        except DeadKernelError:
            return CellOutcome("died", "KernelDied", "the kernel died while running this cell "
                               "(a crash, os._exit, or the memory limit)")
        finally:
            self.cell_seconds += time.monotonic() - started
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        reply = self._replies.get(index, {})
        if errors:
            return CellOutcome("error", errors[-1].get("ename", ""), errors[-1].get("evalue", ""))
        if reply.get("status") == "error":
            return CellOutcome("error", reply.get("ename", "Error"), reply.get("evalue", ""))
        return CellOutcome("ok")

    def _after_locked(self, result: Execution, index: int, was_test: bool,
                      replay: bool = False) -> bool:
        """After a locked cell, let the guard record what it bound (and, after a test, check
        again and leave the test namespace). True if that found tampering."""
        cell = self.nb.cells[index]
        if self.guard is None or self.client is None or cell.cell_type != "code" or \
                not is_instructor_cell(cell):
            return False
        if replay:  # a fresh kernel replaying cells that passed before: nothing to report
            result = Execution()
        before = len(result.tampering)
        names = bound_names(cell.source)
        self._ask_guard(result, self.cell_timeout, self.guard.after_expression(names, was_test))
        return len(result.tampering) > before

    def _ask_guard(self, result: Execution, remaining: float, expression: str) -> None:
        """Ask the guard for its report; it comes back in the execute reply, not as output.

        A check that has not answered in time is followed by a kernel_info request, which the
        kernel answers only after the check (shell requests are handled in order) and without
        running code. If that answer comes first, the kernel was idle and swallowed the check:
        tampering. If neither comes (a busy or dead kernel), nothing is proven either way:
        `result.unverified` is set and the tests from here on are not counted.
        """
        assert self.guard is not None and self.client is not None and self.client.kc is not None
        kc = self.client.kc
        check_id = kc.execute("", silent=True, store_history=False,
                              user_expressions={"report": expression})
        wait = min(INTEGRITY_TIMEOUT, remaining)
        reply = self._reply_to({check_id}, wait)
        if reply is None:
            reply = self._reply_to({check_id, kc.kernel_info()}, INTERRUPT_GRACE)
            if reply is None:
                result.unverified = (f"the integrity check did not answer within "
                                     f"{wait + INTERRUPT_GRACE:.0f} s")
                return
        report = None
        if reply["parent_header"].get("msg_id") == check_id:
            report = reply.get("content", {}).get("user_expressions", {}).get("report")
        for problem in self.guard.parse(report):
            if problem not in result.tampering:
                result.tampering.append(problem)

    def _reply_to(self, msg_ids: set[str], timeout: float) -> dict | None:
        """The first shell reply to one of `msg_ids` within `timeout` s; None if none came or
        the kernel died."""
        assert self.client is not None and self.client.kc is not None
        kc = self.client.kc

        async def wait() -> dict | None:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await ensure_async(kc.shell_channel.get_msg(timeout=min(left, 1.0)))
                except Empty:
                    if not await ensure_async(kc.is_alive()):
                        return None
                    continue
                if msg["parent_header"].get("msg_id") in msg_ids:
                    return msg
            return None

        return run_sync(wait)()

    def _restart(self, result: Execution, succeeded: list[int], deadline: float,
                 run_dir: Path) -> None:
        """Start a fresh kernel and replay the cells that had succeeded, discarding outputs."""
        self._stop()
        if result.restarts >= MAX_RESTARTS:
            return
        result.restarts += 1
        try:
            self._start(run_dir)
            for index in succeeded:
                remaining = deadline - time.monotonic()
                original = self.nb.cells[index]
                replay = original.copy()
                try:
                    status = "timeout" if remaining <= 1 else self._execute(
                        replay, index, min(self.cell_timeout, remaining)).status
                finally:  # nbclient stores the executed copy at `index`: put the original back
                    self.nb.cells[index] = original
                if status == "ok":
                    self._after_locked(result, index, False, replay=True)
                if status in ("timeout", "died"):
                    self._stop()
                    return
        except Exception:  # a kernel that will not start again: the remaining cells are skipped
            self._stop()


@dataclass
class WarmKernel:
    """A sandboxed kernel started ahead of the submission it will serve, with the guard's
    startup code (which imports the modules the tests use: numpy, torch…) sent to it before any
    student code. It serves one submission only and is then shut down."""

    client: _CappedClient
    guard: Guard
    run_dir: Path
    key: tuple

    def close(self) -> None:
        try:
            self.client._cleanup_kernel()
        except Exception:  # already gone
            pass
        remove_run_dir(self.run_dir)


class KernelPool:
    """At most one warm kernel, for the next submission of a grade-class worker (see
    `cli.serve_worker`). `ahead` is whether another submission is expected; `take` hands a
    kernel out once and forgets it, so no kernel ever runs a second student's code."""

    def __init__(self) -> None:
        self.spare: WarmKernel | None = None
        self.ahead = True

    def take(self, key: tuple) -> WarmKernel | None:
        spare, self.spare = self.spare, None
        if spare is not None and spare.key != key:  # another assignment or policy
            spare.close()
            return None
        return spare

    def prepare(self, runner: Runner) -> None:
        """Start the next kernel under `runner`'s policy and send it the guard's startup code
        (a Guard of its own, with a fresh random name); nothing waits for it here."""
        if not self.ahead or self.spare is not None or runner.guard is None:
            return
        run_dir = make_run_dir()
        guard = Guard(watched=runner.guard.watched, blocked=runner.guard.blocked)
        try:
            client = runner._launch(run_dir)
            kc = client.kc = client.km.client()
            kc.start_channels()
            kc.execute(guard.startup_code(), store_history=False, stop_on_error=False)
        except Exception:  # grading goes on with kernels started the usual way
            remove_run_dir(run_dir)
            return
        self.spare = WarmKernel(client, guard, run_dir, runner.pool_key())

    def close(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.close()


#: The warm-kernel pool of this process: set by grade-class's workers only (None: every kernel
#: is started when its submission's run begins).
POOL: KernelPool | None = None


def make_run_dir() -> Path:
    """A private run folder in the temp folder; `work/` is the kernel's working directory (in the
    sandbox a private tmpfs, like `home/`), `sock/` its Unix sockets."""
    run = Path(tempfile.mkdtemp(prefix="ag-")).resolve()
    for part in ("work", "home", "sock"):
        (run / part).mkdir()
    return run


def remove_run_dir(run: Path) -> None:
    shutil.rmtree(run, ignore_errors=True)
