"""A fork server ("zygote") per grading process: kernels start in milliseconds, each in its own
sandbox, and no process ever runs a second student's code.

Most of a kernel's start is importing: ipykernel, IPython, zmq, numpy, torch, torch._dynamo
(which torch.optim imports on a first `step`)… A zygote is a template process that imports those
once and then only forks; it never runs a cell. Each kernel is a fresh fork of it that enters the
sandbox bubblewrap built for that kernel:

1. bubblewrap builds the sandbox exactly as for a plain kernel (`sandbox.Policy.argv`), but the
   command inside is `STUB` (`python -I -S -c`, standard library only), not ipykernel. The stub
   connects to a listening socket the grader made in that kernel's socket folder (the only one
   its sandbox can reach), sends its stdin/stdout/stderr (SCM_RIGHTS), and waits.
2. The grader had handed that listening socket and the kernel's settings (uid, environment,
   limits, working folder, connection file) to the zygote over its control socket. The zygote
   forks a helper (one per kernel) that accepts a single connection, reads the stub's pid
   (SO_PEERCRED), checks that it is a sandboxed process of the kernel's uid, opens the stub's
   namespaces (/proc/PID/ns: user, mount, network, IPC, UTS, cgroup, PID) and `setns`es into
   them, then forks the kernel, which is therefore inside the sandbox's PID namespace and dies
   with bubblewrap's pid 1 like every other process in it.
3. The kernel drops every capability (bounding set, ambient, capset to empty), takes the
   kernel's uid when the grader is root (setgroups([]), setresgid, setresuid), sets
   no-new-privileges, applies prlimit's limits, sets its environment to the policy's, enters
   its working folder, takes the stub's stdio, closes every other descriptor, reseeds `random`
   and numpy's global generator, and runs `python -m ipykernel_launcher -f CONN` in-process
   (`runpy`): ipykernel starts its threads only now.
4. The stub forwards SIGINT and SIGTERM (jupyter_client signals bubblewrap's process group; the
   kernel is not in it) to the kernel, whose pid in the sandbox the helper sends it, and exits
   with the kernel's status, which the helper reports when the kernel ends.

What a kernel inherits from the zygote: its memory (imported libraries, nothing else: the
zygote is started with the kernel's environment and no secrets, from a cleared environment,
cwd `/`, in a session of its own, so without a controlling terminal), its Python hash seed, and
its open descriptors, all closed before any kernel code runs. The zygote refuses to fork while
it has a second thread (a fork would copy held locks); OpenBLAS's pools, started when numpy
loads, are shut down by its own fork handlers, so one throwaway fork leaves it single-threaded.
"""

from __future__ import annotations

import array
import atexit
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Libraries a zygote may import ahead (the top-level names of an assignment's imports that are
#: on this list), with the submodules worth importing with them. Course code (llmlab) is not:
#: an assignment may block parts of it.
PREIMPORTS = {
    "numpy": ["numpy", "numpy.random"],
    "torch": ["torch", "torch._dynamo", "torch.optim", "torch.nn", "torch.nn.functional"],
    "sklearn": ["sklearn", "sklearn.linear_model"],
    "scipy": ["scipy"],
    "pandas": ["pandas"],
}
#: What every kernel imports (ipykernel_launcher's own imports).
KERNEL_IMPORTS = ["zmq", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel",
                  "ipykernel.zmqshell", "jupyter_client.session", "comm", "tornado.ioloop"]
ACCEPT_TIMEOUT = 60.0  # seconds a helper waits for its stub to connect
SOCKET_NAME = "zygote"

# Runs inside the sandbox in place of the kernel (standard library only, `-I -S`).
STUB = r"""
import array, json, os, signal, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
kernel, pending = [], []
def forward(signum, frame):
    if kernel:
        try:
            os.kill(kernel[0], signum)
        except OSError:
            pass
    else:
        pending.append(signum)
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, forward)
buf, status = b"", None
while status is None:
    data = s.recv(4096)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        msg = json.loads(line)
        if "pid" in msg:
            kernel.append(msg["pid"])
            for signum in pending:
                forward(signum, None)
        if "status" in msg:
            status = msg["status"]
if status is None:
    sys.exit(1)
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""

_CLONE = {"user": 0x10000000, "mnt": 0x00020000, "net": 0x40000000, "ipc": 0x08000000,
          "uts": 0x04000000, "cgroup": 0x02000000, "pid": 0x20000000}
_NS_GET_USERNS = 0xB701
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP = 1, 4, 24
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
_CAP_VERSION_3 = 0x20080522


def preimports(modules: list[str] | tuple[str, ...]) -> list[str]:
    """The modules a zygote imports for an assignment whose locked cells use `modules`."""
    found: list[str] = []
    for top in sorted({m.split(".")[0] for m in modules}):
        found += PREIMPORTS.get(top, [])
    # the modules themselves (a watched `numpy.random.seed` imports numpy.random)
    found += sorted({m.rpartition(".")[0] or m for m in modules
                     if m.split(".")[0] in PREIMPORTS and not m.split(".")[-1].startswith("_")})
    return KERNEL_IMPORTS + list(dict.fromkeys(found))


# -- the zygote process -------------------------------------------------------------------------
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def serve(ctl_fd: int, parent: int, modules: list[str]) -> None:
    """The zygote's loop: import `modules`, then one helper fork per spawn request on `ctl_fd`
    until the grader closes it (or dies: PR_SET_PDEATHSIG)."""
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the grader died before the line above
        os._exit(1)
    ctl = socket.socket(fileno=ctl_fd)
    import importlib

    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # not a module, or not installed: the kernel imports it itself
            failed.append(name)
    pid = os.fork()  # OpenBLAS stops its threads in its fork handler; the child does nothing
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # helpers are reaped by the kernel
    ready = json.dumps({"ready": True, "tasks": _tasks(), "failed": failed}).encode()
    ctl.send(ready)
    channels = {ctl.fileno(): ctl}  # the grader's, and one per grade-class worker (`channel`)
    fd_size = array.array("i").itemsize
    while channels:
        readable, _, _ = select.select(list(channels), [], [])
        for fd in readable:
            if fd in channels:
                _serve_one(channels, channels[fd], fd_size, ready)
    os._exit(0)


def _serve_one(channels: dict, ctl: socket.socket, fd_size: int, ready: bytes) -> None:
    try:
        msg, anc, _, _ = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fd_size))
    except (InterruptedError, BlockingIOError):
        return
    except OSError:
        msg, anc = b"", []
    if not msg:  # that grader (or worker) is gone
        del channels[ctl.fileno()]
        ctl.close()
        return
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fd_size])
    request = json.loads(msg)
    if request.get("channel") and len(fds) == 1:  # a control socket for another process
        new = socket.socket(fileno=fds[0])
        channels[new.fileno()] = new
        new.send(ready)
        return
    if _tasks() != 1:  # a fork would copy another thread's locks
        for fd in fds:
            os.close(fd)
        ctl.send(json.dumps({"error": f"the zygote has {_tasks()} threads"}).encode())
        return
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for channel in channels.values():  # no kernel may ask the zygote for anything
                os.close(channel.detach())
            code = _helper(request, list(fds))
        except BaseException as err:  # noqa: BLE001 - the helper reports and ends here
            import traceback

            traceback.print_exc()
            _report(fds[1] if len(fds) > 1 else -1, {"error": f"{type(err).__name__}: {err}"})
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    ctl.send(json.dumps({"forked": pid}).encode())


def _report(fd: int, msg: dict) -> None:
    if fd >= 0:
        try:
            os.write(fd, (json.dumps(msg) + "\n").encode())
        except OSError:
            pass


def _ns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _fd_ns(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _helper(request: dict, fds: list[int]) -> int:
    """One kernel: accept its stub, join its sandbox, fork the kernel, report how it ended."""
    listener = socket.socket(fileno=fds[0])
    report = fds[1] if len(fds) > 1 else -1
    listener.settimeout(ACCEPT_TIMEOUT)
    conn, _ = listener.accept()
    listener.close()
    conn.settimeout(ACCEPT_TIMEOUT)
    fd_size = array.array("i").itemsize
    _, anc, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(3 * fd_size))
    stdio = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            stdio.frombytes(data[: len(data) - len(data) % fd_size])
    if len(stdio) != 3:
        raise RuntimeError("the stub sent no stdio")
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))
    expected = request["uid"] if request["uid"] is not None else os.geteuid()
    if uid != expected:
        raise PermissionError(f"the stub runs as uid {uid}, not {expected}")
    own = {name: _ns_id(f"/proc/self/ns/{name}") for name in _CLONE}
    ns = {name: os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in _CLONE}
    for name in ("pid", "mnt", "net"):  # a process of the sandbox, not of the host
        if _fd_ns(ns[name]) == own[name]:
            raise PermissionError(f"the stub shares the grader's {name} namespace")
    conn.setblocking(False)
    try:  # still connected: `pid` was the stub's when its namespaces were opened
        if conn.recv(1, socket.MSG_PEEK) == b"":
            raise ConnectionError("the stub left")
    except BlockingIOError:
        pass
    conn.setblocking(True)
    # the host's /proc, to find the kernel's pid in the sandbox once the mounts are the sandbox's
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    libc = _libc()
    import fcntl

    owner = fcntl.ioctl(ns["mnt"], _NS_GET_USERNS)  # the user namespace bubblewrap made (or ours)
    try:
        if _fd_ns(owner) != own["user"]:
            _check(libc.setns(owner, _CLONE["user"]), "setns(user)")
        for name in ("mnt", "net", "ipc", "uts", "cgroup", "pid"):
            if _fd_ns(ns[name]) != own[name]:
                _check(libc.setns(ns[name], _CLONE[name]), f"setns({name})")
        if _fd_ns(ns["user"]) not in (own["user"], _fd_ns(owner)):  # --disable-userns's inner
            _check(libc.setns(ns["user"], _CLONE["user"]), "setns(user)")
    finally:
        os.close(owner)
        for fd in ns.values():
            os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    kernel = os.fork()
    if kernel == 0:
        code = 1
        try:
            conn.detach()
            listener.detach()
            os.close(proc)
            code = _kernel(request, list(stdio))
        finally:
            os._exit(code)
    for fd in stdio:
        os.close(fd)
    nspid = kernel
    status_fd = os.open(f"{kernel}/status", os.O_RDONLY, dir_fd=proc)
    with open(status_fd, encoding="ascii") as status_file:
        for line in status_file:
            if line.startswith("NSpid:"):
                nspid = int(line.split()[-1])
    os.close(proc)
    conn.settimeout(None)
    conn.sendall((json.dumps({"pid": nspid}) + "\n").encode())
    _report(report, {"pid": kernel, "nspid": nspid})
    while True:
        try:
            _, status = os.waitpid(kernel, 0)
            break
        except ChildProcessError:
            status = 1 << 8
            break
        except InterruptedError:
            continue
    try:
        conn.sendall((json.dumps({"status": status}) + "\n").encode())
    except OSError:
        pass
    _report(report, {"status": status})
    return 0


def _kernel(request: dict, stdio: list[int]) -> int:
    """In the sandbox's namespaces: become the kernel's process and run it (never returns to the
    zygote's code: the caller `_exit`s with what this returns)."""
    libc = _libc()
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient caps")
    uid = request["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    # a uid change made the process non-dumpable (its /proc files root's): as after an exec
    _check(libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "PR_SET_DUMPABLE")
    import resource

    limits = {resource.RLIMIT_NPROC: request["nproc"], resource.RLIMIT_FSIZE: request["fsize"],
              resource.RLIMIT_CORE: 0}
    if request.get("as"):
        limits[resource.RLIMIT_AS] = request["as"]
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["PWD"] = request["work"]  # as bubblewrap's --chdir sets it
    os.chdir(request["work"])
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    for signum, handler in ((signal.SIGCHLD, signal.SIG_DFL), (signal.SIGTERM, signal.SIG_DFL),
                            (signal.SIGHUP, signal.SIG_DFL),
                            (signal.SIGINT, signal.default_int_handler)):
        signal.signal(signum, handler)
    import random

    random.seed()  # forks share the zygote's state; a fresh process seeds from entropy
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    sys.path[:] = [request["work"], *_BASE_PATH]  # as `python -m` started in the work folder
    for name in [m for m in sys.modules if m == "autograder" or m.startswith("autograder.")]:
        del sys.modules[name]  # the grader's code: not the kernel's to see
    if "probe" in request:
        sys.argv = ["-c", *request["probe_args"]]
        code = compile(request["probe"], "<probe>", "exec")
        namespace = {"__name__": "__main__"}
        target = lambda: exec(code, namespace)  # noqa: E731
    else:
        import runpy

        sys.argv = ["-m", *request["argv"]]  # runpy puts the module's file first
        target = lambda: runpy.run_module(request["module"], run_name="__main__",  # noqa: E731
                                          alter_sys=True)
    status = 0
    try:
        target()
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - as an uncaught exception would end a process
        import traceback

        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream: nothing more to write
            pass
    return status


_BASE_PATH: list[str] = []  # sys.path of the zygote without its first entry ('' of -c)

_BOOT = ("import sys; from autograder import zygote; zygote._BASE_PATH[:] = sys.path[2:]; "
         "zygote.serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])")


# -- the grader's side --------------------------------------------------------------------------
class Zygote:
    """A running zygote: `spawn` hands it one kernel's listening socket and settings."""

    def __init__(self, env: dict[str, str], modules: list[str], folder: Path | None = None,
                 python: str = sys.executable):
        self.folder = folder  # removed on close
        self.started = time.monotonic()
        self.env, self.modules = dict(env), list(modules)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parent.parent)  # this autograder, not another's
        self.proc = subprocess.Popen(
            [python, "-c", _BOOT.replace("import sys;", f"import sys; sys.path.insert("
                                                 f"1, {root!r});", 1),
             str(theirs.fileno()), str(os.getpid()), *modules],
            env=self.env, cwd="/", pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=_log(), start_new_session=True)
        theirs.close()
        self.ctl = ours
        self.lock = threading.Lock()
        self.ready: dict | None = None
        self.failed = ""

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once the zygote has imported its modules and is single-threaded."""
        if self.ready is None and not self.failed:
            ready, _, _ = select.select([self.ctl], [], [], timeout)
            msg = self.ctl.recv(65536) if ready else b""
            info = json.loads(msg) if msg else {}
            if info.get("ready") and info.get("tasks") == 1:
                self.ready = info
            else:
                self.failed = ("the zygote did not start" if not info else
                               f"the zygote has {info.get('tasks')} threads")
        return self.ready is not None

    @classmethod
    def attach(cls, fd: int, env: dict[str, str], modules: list[str]) -> Zygote:
        """A zygote another process started (grade-class's), through the control socket `fd`
        it handed this one (`channel`)."""
        self = cls.__new__(cls)
        self.folder, self.started, self.proc = None, time.monotonic(), None
        self.env, self.modules = dict(env), list(modules)
        self.ctl = socket.socket(fileno=fd)
        self.lock = threading.Lock()
        self.ready, self.failed = None, ""
        return self

    def channel(self) -> socket.socket:
        """A new control socket for another process (a grade-class worker): kernels it asks for
        are forks of this same zygote. Returns its end (inheritable, to pass on)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self.lock:  # answered on the new socket, once the zygote is ready
            self.ctl.sendmsg([json.dumps({"channel": True}).encode()],
                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                               array.array("i", [theirs.fileno()]))])
        theirs.close()
        ours.set_inheritable(True)
        return ours

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def spawn(self, policy, module: str, argv: list[str], report: bool = False,
              probe: tuple[str, list[str]] | None = None) -> tuple[list[str], Report | None]:
        """Listen in `policy.sockets` for the stub of one kernel, and have the zygote fork its
        helper. Returns the stub command (to run under `policy.argv`) and, if `report`, the
        socket on which the helper reports the kernel's host pid and its end."""
        from autograder import sandbox

        path = policy.sockets / SOCKET_NAME
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ours = theirs = None
        try:
            listener.bind(str(path))
            os.chmod(path, 0o600)
            if policy.uid is not None:
                os.chown(path, policy.uid, policy.uid)
            listener.listen(1)
            request = {"uid": policy.uid, "env": policy.env(), "work": str(policy.work),
                       "nproc": sandbox.MAX_PROCESSES, "fsize": sandbox.MAX_FILE_BYTES,
                       "as": policy.memory_mb * 1024**2 if policy.memory_mb else None,
                       "module": module, "argv": argv}
            if probe is not None:
                request["probe"], request["probe_args"] = probe
            fds = [listener.fileno()]
            if report:
                ours, theirs = socket.socketpair()
                fds.append(theirs.fileno())
            with self.lock:
                if not self.wait_ready():
                    raise RuntimeError(self.failed)
                self.ctl.sendmsg([json.dumps(request).encode()],
                                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                ready, _, _ = select.select([self.ctl], [], [], 30)
                answer = json.loads(self.ctl.recv(65536) or b"{}") if ready else {}
            if "forked" not in answer:
                raise RuntimeError(answer.get("error", "the zygote did not answer"))
        except BaseException:
            if ours is not None:
                ours.close()
            raise
        finally:
            listener.close()
            if theirs is not None:
                theirs.close()
        return ([sys.executable, "-I", "-S", "-c", STUB, str(path)],
                None if ours is None else Report(ours))

    def close(self) -> None:
        try:
            self.ctl.close()
        finally:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
            if self.folder is not None:
                import shutil

                shutil.rmtree(self.folder, ignore_errors=True)


_ZYGOTES: dict[tuple, Zygote] = {}
_LOCK = threading.Lock()


def get(spec_env: dict[str, str], modules: list[str], python: str = sys.executable) -> Zygote:
    """This process's zygote for a kernel spec's environment and `modules` (started on first
    use; one at a time: a zygote for another assignment replaces it). Its environment is a
    kernel's (`sandbox.Policy.env`), with HOME and the config folders in a folder of its own;
    `python` is the kernel spec's interpreter, as its path is (a venv's, not the one it links to:
    sys.path depends on it)."""
    key = (tuple(sorted(spec_env.items())), tuple(modules), python)
    with _LOCK:
        zygote = _ZYGOTES.get(key)
        if zygote is not None and zygote.alive():
            return zygote
        for old in _ZYGOTES.values():
            old.close()
        _ZYGOTES.clear()
        handed = os.environ.pop(CHANNEL_ENV, "")  # grade-class's zygote, for this worker
        if handed:
            fd, _, handed_key = handed.partition(":")
            if handed_key == key_text(spec_env, modules, python):
                zygote = _ZYGOTES[key] = Zygote.attach(int(fd), {}, modules)
                return zygote
            os.close(int(fd))
        import tempfile

        from autograder import sandbox

        folder = Path(tempfile.mkdtemp(prefix="ag-zygote-"))
        zygote = Zygote(sandbox.Policy(folder, spec_env=dict(spec_env)).env(), modules, folder,
                        python)
        _ZYGOTES[key] = zygote
        return zygote


#: How grade-class hands a worker its zygote's control socket: "FD:KEY" (`key_text`).
CHANNEL_ENV = "AUTOGRADER_ZYGOTE_CHANNEL"


def key_text(spec_env: dict[str, str], modules: list[str], python: str) -> str:
    """What a handed-on zygote was started for (a worker uses it only for the same)."""
    import hashlib

    return hashlib.sha256(json.dumps([sorted(spec_env.items()), modules, python]).encode()
                          ).hexdigest()


def close_all() -> None:
    with _LOCK:
        for zygote in _ZYGOTES.values():
            zygote.close()
        _ZYGOTES.clear()


atexit.register(close_all)


class Report:
    """The lines a helper reports on a kernel: {"pid": host pid, "nspid": pid in the sandbox},
    then {"status": wait status} when it ends."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def read(self, timeout: float) -> dict:
        """The next line ({} if none came within `timeout` s, or the helper is gone)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return {}
            data = self.sock.recv(4096)
            if not data:
                return {}
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


def _log():
    """Where the zygote's stderr goes: AUTOGRADER_ZYGOTE_LOG (a file, for debugging) or nowhere."""
    path = os.environ.get("AUTOGRADER_ZYGOTE_LOG")
    return open(path, "ab") if path else subprocess.DEVNULL  # noqa: SIM115 - Popen dups it
