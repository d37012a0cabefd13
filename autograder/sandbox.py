"""Operating-system isolation of a grading kernel (Linux, through bubblewrap), and what it holds.

The whole policy is `Policy.argv`: one bubblewrap (`bwrap`) command line, in this order:
- the filesystem is a recursive read-only view of the host (`--ro-bind / /`: every other mount,
  a separate /home or /work, a tmpfs, is read-only too), with a fresh minimal `/dev` (null, zero,
  random, urandom, tty, pts; no disks) and a `/proc` of its own PID namespace;
- the home folders (`/root`, the grader's `$HOME`) and any folder on the way to the interpreter
  or the project that others may not enter are covered by empty read-only tmpfs mounts, with only
  the project, the virtual environment and the base interpreter bound back (read-only);
- the folders that hold secrets (solutions, hidden tests, the gradebook, other students' work,
  git history) are covered by empty read-only tmpfs mounts;
- `/tmp`, `/var/tmp`, `/dev/shm` and the grader's temp folder are fresh private tmpfs mounts of
  bounded size; of the run folder the kernel sees its connection file (read-only), its socket
  folder (writable: the grader talks to the kernel over Unix sockets there), and a private tmpfs
  working folder and HOME;
- its own PID, network (no interface but its own loopback), IPC, UTS and cgroup namespaces: it
  sees only its own processes, and when the kernel or bubblewrap ends (`--die-with-parent`: also
  when the grader dies), every process it started, `setsid` and double forks included, ends too;
- a cleared environment holding only `ALLOWED_ENV` (PATH, LANG, HOME pointing at its private
  folder, IPython's and matplotlib's config folders) and what the kernel spec sets (the course's
  `llmlab.setup.kernel_env()`: TIKTOKEN_CACHE_DIR);
- no capabilities, no new privileges; run by root, the kernel runs as a uid of its own
  (`KERNEL_UID_BASE` + the grader's pid, no user namespace needed); run by another user, as that
  user in a user namespace that cannot create more;
- limits (`prlimit`): processes and threads (RLIMIT_NPROC, `MAX_PROCESSES`), file size
  (RLIMIT_FSIZE, `MAX_FILE_BYTES`) and address space (`--memory-mb`).
bubblewrap builds each kernel's sandbox around a small stub, and the kernel itself is a fork of a
zygote that enters it (`autograder.zygote`; unless `AUTOGRADER_ZYGOTE=0`, or the probe finds that
path broken and bubblewrap starts kernels itself). The policy is the same either way.
`available()` starts a probe under this policy once per process and measures each property from
inside (and, from outside, that the sandbox dies with bubblewrap); `Isolation.describe()` reports
each. What it does not do: filter system calls (no seccomp), hide the rest of the read-only
filesystem (the kernel can read what the grader's user can read outside the covered folders), or
bound the disk space the socket folder may take (only each file's size).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

MAX_PROCESSES = 512  # RLIMIT_NPROC: processes and threads (torch starts one per core, and more)
MAX_FILE_BYTES = 512 * 1024**2  # RLIMIT_FSIZE
KERNEL_UID_BASE = 1_000_000  # run by root, the kernel's uid is this + the grader's pid
TMPFS_BYTES = {"/tmp": 512 * 1024**2, "/var/tmp": 64 * 1024**2, "/dev/shm": 256 * 1024**2}
WORK_BYTES = 1024**3  # the kernel's working folder
HOME_BYTES = 64 * 1024**2
#: Environment variables a kernel gets (values in `Policy.env`), with those its kernel spec sets
#: (`llmlab.setup.kernel_env()`); nothing else passes.
ALLOWED_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME", "TMPDIR", "IPYTHONDIR",
               "MPLCONFIGDIR")
INSTALL_HINT = ("install bubblewrap: `sudo apt-get install bubblewrap` (Debian, Ubuntu), "
                "`sudo dnf install bubblewrap` (Fedora)")
#: The properties `available()` measures, in the order the summary lists them.
PROPERTIES = ("read_only", "secrets_hidden", "private_tmp", "pid_namespace", "no_network",
              "clean_environment", "non_root", "no_capabilities", "limits", "dies_with_grader")


def _needed() -> list[Path]:
    """Folders the kernel must read: the project, its environment and the base interpreter."""
    from llmlab import PROJECT_ROOT

    return sorted({p.resolve() for p in (PROJECT_ROOT, Path(sys.prefix), Path(sys.base_prefix),
                                         Path(sys.executable).resolve().parent)})


def kernel_uid() -> int | None:
    """The uid a kernel runs as when the grader is root (None: it keeps the grader's uid, as
    for a grader that is not root, and as for a root whose user namespace maps no other uid:
    a rootless container, `unshare -r`)."""
    if os.geteuid() != 0:
        return None
    uid = KERNEL_UID_BASE + os.getpid()
    return uid if uid_mapped(uid) else None


def uid_mapped(uid: int, uid_map: Path = Path("/proc/self/uid_map")) -> bool:
    """Whether this process's user namespace maps `uid` (so files can be given to it); True
    where the kernel has no such file."""
    try:
        lines = uid_map.read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        inside, _, count = (int(x) for x in line.split())
        if inside <= uid < inside + count:
            return True
    return False


@functools.cache
def _bwrap_version() -> tuple[int, ...]:
    try:
        out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout
        return tuple(int(x) for x in out.split()[-1].split(".")[:2])
    except (OSError, ValueError, IndexError):
        return (0,)


@dataclass
class Policy:
    """What a kernel sees, may write, and may use. `argv(cmd)` is the whole policy."""

    run_dir: Path
    hidden: list[Path] = field(default_factory=list)
    memory_mb: int | None = None
    uid: int | None = None  # run as this uid (the grader is root); None: the grader's uid
    #: what the kernel spec sets (the course's `llmlab.setup.kernel_env()`: TIKTOKEN_CACHE_DIR)
    spec_env: dict[str, str] = field(default_factory=dict)

    @property
    def sockets(self) -> Path:
        return self.run_dir / "sock"

    @property
    def work(self) -> Path:
        return self.run_dir / "work"

    @property
    def home(self) -> Path:
        return self.run_dir / "home"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(Path(sys.executable).parent),
                                os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"])
        env = {"PATH": path, "LANG": os.environ.get("LANG") or "C.UTF-8",
               "HOME": str(self.home), "USER": "student", "LOGNAME": "student", "TMPDIR": "/tmp",
               "IPYTHONDIR": str(self.home / ".ipython"),
               "MPLCONFIGDIR": str(self.home / ".matplotlib"), **self.spec_env}
        if os.environ.get("LC_ALL"):
            env["LC_ALL"] = os.environ["LC_ALL"]
        return env

    def prepare(self) -> None:
        """Create the run folder's parts (and, for another uid, hand it its socket folder)."""
        for d in (self.sockets, self.work, self.home):
            d.mkdir(parents=True, exist_ok=True)
        if self.uid is not None:  # read-only inside but the socket folder
            for d in (self.run_dir, self.sockets):
                os.chown(d, self.uid, self.uid)
            for f in self.run_dir.glob("*.json"):  # the connection file: the kernel reads it
                os.chown(f, self.uid, self.uid)

    def argv(self, cmd: list[str]) -> list[str]:
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if self.uid is None:  # not root: a user namespace, which cannot make more (bwrap 0.8+)
            args += ["--unshare-user", *(["--disable-userns"] if _bwrap_version() >= (0, 8)
                                          else [])]
        else:  # root: bubblewrap keeps only what setpriv needs to become `uid` and drop the rest
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                     "CAP_SETPCAP"]
        args.append("--clearenv")
        for key, value in self.env().items():
            args += ["--setenv", key, value]
        args += self._mounts()
        args += ["--chdir", str(self.work), "--", shutil.which("prlimit") or "prlimit",
                 f"--nproc={MAX_PROCESSES}", f"--fsize={MAX_FILE_BYTES}", "--core=0"]
        if self.memory_mb:
            args.append(f"--as={self.memory_mb * 1024**2}")
        args.append("--")
        if self.uid is not None:
            args += [shutil.which("setpriv") or "setpriv", f"--reuid={self.uid}",
                     f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all",
                     "--bounding-set=-all", "--no-new-privs", "--"]
        return args + cmd

    def _mounts(self) -> list[str]:
        needed = _needed()
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        private = [Path(d).resolve() for d in TMPFS_BYTES if Path(d).is_dir()]
        tmp = self.run_dir.parent.resolve()
        if tmp not in private:
            private.append(tmp)
        # covered: home folders, and folders on the way to what the kernel needs that others
        # may not enter (a kernel with a uid of its own could not reach the interpreter)
        covers = {Path("/root"), *([Path.home().resolve()] if Path.home().is_dir() else [])}
        for p in needed:
            for a in p.parents:
                if self.uid is not None and a != Path("/") and not os.stat(a).st_mode & 0o001:
                    covers.add(a)
        covers = {c for c in covers if c.is_dir() and c != Path("/") and
                  not any(c.is_relative_to(p) for p in needed)}
        covers = {c for c in covers if not any(c != o and c.is_relative_to(o) for o in covers)}
        shown: list[Path] = []  # what is bound back inside a cover or a private folder
        for c in sorted(covers):
            args += ["--tmpfs", str(c)]
            for top in sorted({c / p.relative_to(c).parts[0] for p in needed
                               if p.is_relative_to(c)}):
                args += ["--ro-bind", str(top), str(top)]
                shown.append(top)
            for d in private:  # a temp folder in a home folder: its mount point
                if d.is_relative_to(c) and not any(d.is_relative_to(t) for t in shown):
                    args += ["--dir", str(d)]
            args += ["--remount-ro", str(c)]
        for d in private:
            args += ["--perms", "1777", "--size", str(TMPFS_BYTES.get(str(d), 64 * 1024**2)),
                     "--tmpfs", str(d)]
            for p in needed:
                if p.is_relative_to(d):
                    args += ["--ro-bind", str(p), str(p)]
                    shown.append(p)

        def visible(path: Path) -> bool:
            return any(path.is_relative_to(s) for s in shown) or not any(
                path.is_relative_to(c) for c in (*covers, *private))

        for h in (h.resolve() for h in self.hidden):
            if h.is_dir() and visible(h):
                args += ["--tmpfs", str(h), "--remount-ro", str(h)]
            elif h.is_file() and visible(h):
                args += ["--ro-bind", "/dev/null", str(h)]
        args += ["--remount-ro", "/dev",
                 "--ro-bind", str(self.run_dir), str(self.run_dir),
                 "--bind", str(self.sockets), str(self.sockets),
                 "--perms", "1777", "--size", str(WORK_BYTES), "--tmpfs", str(self.work),
                 "--perms", "1777", "--size", str(HOME_BYTES), "--tmpfs", str(self.home)]
        return args


@dataclass(frozen=True)
class Isolation:
    """What isolation a grading kernel gets on this machine: each property, held or not."""

    level: str  # "full" (every property held), "partial", or "none"
    reason: str  # why not better, or "" for full
    held: tuple[tuple[str, bool, str], ...] = ()  # (property, held, detail)
    #: kernels are forks of a zygote (autograder.zygote) that enter their sandbox; False: each
    #: is started inside it by bubblewrap (`launch` says why)
    forked: bool = False
    launch: str = ""

    @property
    def flags(self) -> list[str]:
        if self.level == "full":
            return []
        missing = [name for name, ok, _ in self.held if not ok]
        return [f"isolation_{self.level}" + (f"={','.join(missing)}" if missing and
                                             self.level == "partial" else "")]

    def describe(self) -> str:
        if self.level == "none":
            return ("NOT isolated: student code can reach the network and read files "
                    f"({self.reason})")
        parts = [f"{name} {'yes' if ok else 'NO'} ({detail})" for name, ok, detail in self.held]
        head = "isolated (bubblewrap)" if self.level == "full" else \
            f"PARTLY isolated (bubblewrap; {self.reason})"
        launch = f"; kernels {self.launch}" if self.launch else ""
        return head + ": " + "; ".join(parts) + launch


def platform_problem() -> str:
    """Why `grade` cannot run on this operating system, or "" on Linux."""
    if sys.platform.startswith("linux"):
        return ""
    return (f"grading with hidden tests needs Linux: its sandbox (bubblewrap) uses Linux "
            f"namespaces, which {sys.platform} does not have. Use `check` here, or grade on a "
            "Linux machine (a VM, WSL 2 on Windows, or a Linux container)")


# Runs inside the sandbox: measures each property and prints one JSON line, then waits (the
# grader checks that it dies with bubblewrap).
_PROBE = r"""
import json, os, resource, socket, sys
cfg = json.loads(sys.argv[1])
out = {}
def mounts():
    seen = []
    for line in open('/proc/self/mountinfo'):
        p = line.split()[4].replace('\\040', ' ')
        if p not in seen:
            seen.append(p)
    return seen
rw = []
for p in mounts():
    if p == '/proc' or p.startswith('/proc/') or p.startswith('/dev/') and not p == '/dev/shm':
        continue
    try:
        if not os.statvfs(p).f_flag & os.ST_RDONLY and p not in cfg['writable']:
            rw.append(p)
    except OSError:
        pass
out['read_only'] = (not rw, 'writable: ' + ', '.join(rw) if rw else
                    'every mount read-only but tmp, work and socket folders')
left = [p for p in cfg['hidden'] if os.path.exists(p) and os.listdir(p)]
out['secrets_hidden'] = (not left, 'visible: ' + ', '.join(left) if left else 'covered')
out['private_tmp'] = (not os.path.exists(cfg['tmp_canary']), 'fresh /tmp, /var/tmp, /dev/shm')
pids = [p for p in os.listdir('/proc') if p.isdigit()]
out['pid_namespace'] = (len(pids) <= 3 and os.getpid() <= 3, f'{len(pids)} processes visible')
names = [n for _, n in socket.if_nameindex()]
out['no_network'] = (names == ['lo'], 'interfaces: ' + ', '.join(names))
extra = sorted(set(os.environ) - set(cfg['env']) - {'PWD', 'LC_CTYPE', 'SHLVL', '_'})
out['clean_environment'] = (not extra and cfg['canary'] not in os.environ,
                            'also: ' + ', '.join(extra) if extra else 'allow-list only')
# in the initial user namespace uid_map is the identity; in a user namespace bubblewrap made for
# an unprivileged grader only the grader's own uid (not 0) can be mapped
identity = open('/proc/self/uid_map').read().split() == ['0', '0', '4294967295']
outer = os.getuid() if identity else cfg['grader_uid']
out['non_root'] = (os.getuid() != 0 and outer != 0, f'uid {os.getuid()} (outside: {outer})')
caps = {k: int(v, 16) for k, v in (l.split(':') for l in open('/proc/self/status')
                                   if l.startswith('Cap'))}
out['no_capabilities'] = (not any(caps[k] for k in ('CapEff', 'CapPrm', 'CapAmb', 'CapInh')),
                          'bounding set empty' if not caps['CapBnd'] else
                          'none effective (bounding set not empty)')
lim = {n: resource.getrlimit(getattr(resource, 'RLIMIT_' + n.upper()))[0]
       for n in ('nproc', 'fsize', 'as')}
ok = lim['nproc'] == cfg['nproc'] and lim['fsize'] == cfg['fsize'] and (
    not cfg['as'] or lim['as'] == cfg['as'])
out['limits'] = (ok, f"{lim['nproc']} processes, files {lim['fsize'] >> 20} MB" + (
    f", memory {lim['as'] >> 20} MB" if lim['as'] > 0 else ''))
print(json.dumps(out), flush=True)
import time
time.sleep(60)
"""


def _probe(fork: bool = False) -> Isolation:
    """Measure each property from inside a sandbox: a plain one (bubblewrap starts the probe) or,
    with `fork`, one a fork of a zygote entered (autograder.zygote), as kernels will."""
    import tempfile

    version = "bubblewrap " + ".".join(map(str, _bwrap_version()))
    with tempfile.TemporaryDirectory(prefix="ag-probe-") as tmp, \
            tempfile.NamedTemporaryFile(prefix="ag-canary-") as canary:
        run = Path(tmp)
        from llmlab import PROJECT_ROOT

        secret = PROJECT_ROOT / "autograder"  # stands for the secrets: must look empty inside
        policy = Policy(run, [secret], 1024, kernel_uid())
        policy.prepare()
        cfg = {"writable": ["/tmp", "/var/tmp", "/dev/shm", str(run.parent.resolve()),
                            str(policy.sockets),
                            str(policy.work), str(policy.home)],
               "hidden": [str(secret.resolve())], "tmp_canary": canary.name,
               "env": list(policy.env()), "canary": "AG_PROBE_CANARY", "nproc": MAX_PROCESSES,
               "fsize": MAX_FILE_BYTES, "as": 1024 * 1024**2, "grader_uid": os.geteuid()}
        zyg = report = None
        if fork:
            from autograder import zygote

            zyg = zygote.Zygote(policy.env(), [])
            try:
                stub, report = zyg.spawn(policy, "", [], report=True,
                                         probe=(_PROBE, [json.dumps(cfg)]))
            except Exception:
                zyg.close()
                raise
            argv = policy.argv(stub)
        else:
            argv = policy.argv([sys.executable, "-I", "-S", "-c", _PROBE, json.dumps(cfg)])
        info_r, info_w = os.pipe()
        argv[1:1] = ["--info-fd", str(info_w)]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, pass_fds=(info_w,), cwd=run,
                                    env={**os.environ, "AG_PROBE_CANARY": "1"})
        except OSError as err:
            os.close(info_r)
            os.close(info_w)
            if zyg is not None:
                zyg.close()
            return Isolation("none", f"bubblewrap could not start: {err}")
        os.close(info_w)
        try:
            line = _readline(proc, 30)
            if not line:
                proc.kill()
                err = (proc.communicate(timeout=10)[1].strip().splitlines() or ["no output"])[-1]
                return Isolation("none", f"bubblewrap failed: {err}" + _userns_hint(err))
            held = json.loads(line)
            try:  # bubblewrap wrote it before the probe started
                child = json.loads(os.read(info_r, 65536) or b"{}").get("child-pid")
            except ValueError:
                child = None
            forked = report.read(10).get("pid") if report is not None else None
            proc.kill()  # as if the grader died: everything in the sandbox must end with it
            proc.wait(10)
            gone = child is not None and _gone(child, 5.0) and (
                report is None or forked is not None and _gone(forked, 5.0))
            held["dies_with_grader"] = (gone, "the sandbox ends with bubblewrap" if gone
                                        else "a process outlived bubblewrap")
        finally:
            os.close(info_r)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if report is not None:
                report.close()
            if zyg is not None:
                zyg.close()
    rows = tuple((name, bool(held[name][0]), str(held[name][1])) for name in PROPERTIES)
    missing = [name for name, ok, _ in rows if not ok]
    if missing:
        return Isolation("partial", f"{version}: not held: {', '.join(missing)}", rows)
    return Isolation("full", "", rows)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # a zombie: dead, waiting to be reaped by its parent
            return True
        time.sleep(0.02)
    return False


def _userns_hint(err: str) -> str:
    if os.geteuid() != 0 and ("namespace" in err.lower() or "permission" in err.lower()):
        return (" (user namespaces are restricted: on Ubuntu 24.04 "
                "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or grade as "
                "root)")
    return ""


def zygote_wanted() -> bool:
    """Kernels fork from a zygote unless AUTOGRADER_ZYGOTE=0 (then bubblewrap starts each)."""
    return os.environ.get("AUTOGRADER_ZYGOTE", "1") != "0"


@functools.cache
def available() -> Isolation:
    """Probe once, under the full policy, which properties hold here (see `_probe`): from inside
    a forked kernel's sandbox if that gives every property, else from a plain one."""
    problem = platform_problem()
    if problem:
        return Isolation("none", problem)
    missing = [t for t in ("bwrap", "prlimit", *(["setpriv"] if os.geteuid() == 0 else []))
               if shutil.which(t) is None]
    if missing:
        return Isolation("none", f"{', '.join(missing)} not found: " + (
            INSTALL_HINT if "bwrap" in missing else "install util-linux"))
    if not zygote_wanted():
        return replace(_probe(), launch="started by bubblewrap (AUTOGRADER_ZYGOTE=0)")
    try:
        forked = _probe(fork=True)
        why = forked.reason
    except Exception as err:  # noqa: BLE001 - any failure: kernels start the plain way
        forked, why = None, f"{type(err).__name__}: {err}"
    if forked is not None and forked.level == "full":
        return replace(forked, forked=True, launch="forked from a zygote that entered the sandbox")
    return replace(_probe(), launch=f"started by bubblewrap (zygote unusable: {why})")


def wrap(cmd: list[str], policy: Policy | None) -> list[str]:
    """The kernel command `cmd` under `policy` (unchanged for None: no sandbox)."""
    if policy is None:
        return cmd
    policy.prepare()
    return policy.argv(cmd)

