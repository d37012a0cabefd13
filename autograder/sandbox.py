"""Operating-system isolation of a grading kernel (Linux), and exactly what it does not do.

At level "full" the kernel runs in its own network namespace (no network at all, not even
loopback: it talks to the grader over Unix sockets) and its own mount namespace, in which:
- the root mount is remounted read-only. The remount is not recursive: any other mount (a
  separate /home or /work, a tmpfs, /dev/shm when it is not replaced below) stays as writable as
  it is for the grader;
- the folders that hold secrets (solutions, hidden tests, the gradebook, other students' work,
  git history) are covered by empty read-only tmpfs mounts;
- `/tmp`, `/dev/shm` and `/var/tmp` are fresh, private tmpfs mounts, and of the temp folder the
  kernel sees only its own run folder (and the project or interpreter if they live there);
- every capability is dropped (`setpriv`, no new privileges), so none of the mounts can be undone;
- the address space is capped (`ulimit -v`).
It does not: give the kernel its own PID namespace (it sees the host's processes, and a process
it starts with `setsid` can outlive grading), clear the environment (the kernel inherits the
grader's, HOME included, minus the AG_* variables), change the user (run as root, the kernel
stays uid 0, without capabilities), or limit processes or file sizes. Level "network" is the
network namespace alone. Each level is probed once; what is not available is reported.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Runs with full capabilities inside the new namespaces (as root, or as the grader's user mapped to
# root of a new user namespace), then execs the kernel without capabilities.
# "$AG_RUN" (connection file, sockets, working directory) lives in the temp folder "$AG_TMP".
# A fresh tmpfs is prepared in "$AG_RUN/stage" with the run folder (and "$AG_KEEP": the project
# and the interpreter, when they live in the temp folder too) bound inside it at the same relative
# paths, then moved over "$AG_TMP": of the temp folder the kernel sees only those.
_SCRIPT = r"""
set -e
IFS='
'
rel="${AG_RUN#"$AG_TMP"/}"
mount -t tmpfs -o size=512m,mode=1777 tmpfs "$AG_RUN/stage"
mkdir -p "$AG_RUN/stage/$rel"
mount --bind "$AG_RUN" "$AG_RUN/stage/$rel"
for k in $AG_KEEP; do
  mkdir -p "$AG_RUN/stage/${k#"$AG_TMP"/}"
  mount --bind "$k" "$AG_RUN/stage/${k#"$AG_TMP"/}"
  mount -o remount,bind,ro "$AG_RUN/stage/${k#"$AG_TMP"/}"
done
mount --move "$AG_RUN/stage" "$AG_TMP"
mount -o remount,bind,ro /
for d in $AG_FRESH; do
  mount -t tmpfs -o size=64m,mode=1777 tmpfs "$d"
done
for d in $AG_HIDE; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=0555 tmpfs "$d"; fi
done
cd "$AG_RUN/work"
if [ -n "$AG_MEM_KB" ]; then ulimit -v "$AG_MEM_KB"; fi
unset AG_HIDE AG_RUN AG_TMP AG_KEEP AG_FRESH AG_MEM_KB
exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- "$@"
"""


@dataclass(frozen=True)
class Isolation:
    """What isolation a grading kernel gets on this machine."""

    level: str  # "full", "network", or "none"
    reason: str  # why not better, or "" for full

    @property
    def flags(self) -> list[str]:
        return [] if self.level == "full" else [f"isolation_{self.level}"]

    def describe(self) -> str:
        if self.level == "full":
            return ("isolated: no network, root mount read-only, solutions and other "
                    "submissions hidden, private /tmp, no capabilities (no PID namespace; "
                    "environment inherited)")
        if self.level == "network":
            return f"partly isolated: no network, but files are not hidden ({self.reason})"
        return f"NOT isolated: student code can reach the network and read files ({self.reason})"


def _unshare_prefix(*namespaces: str) -> list[str]:
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return ["unshare", *namespaces, *([] if root else ["--map-root-user"])]


def wrap(cmd: list[str], level: str) -> list[str]:
    """The kernel command `cmd` wrapped for an isolation level."""
    if level == "full":
        return [*_unshare_prefix("--net", "--mount", "--propagation", "private"), "--",
                "/bin/sh", "-c", _SCRIPT, "sandbox", *cmd]
    if level == "network":
        return [*_unshare_prefix("--net"), "--", *cmd]
    return cmd


def _needed() -> list[Path]:
    """Folders the kernel must see: the project, its environment and the base interpreter."""
    from llmlab import PROJECT_ROOT

    return [p.resolve() for p in (PROJECT_ROOT, Path(sys.prefix), Path(sys.base_prefix),
                                  Path(sys.executable).resolve().parent)]


def env_for(run_dir: Path, hidden: list[Path], memory_mb: int | None) -> dict[str, str]:
    tmp = run_dir.parent.resolve()
    needed = _needed()
    keep = sorted({p for p in needed if p.is_relative_to(tmp)})
    fresh = [d for d in (Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"))
             if d.is_dir() and d.resolve() != tmp and not any(p.is_relative_to(d.resolve())
                                                              for p in needed)]
    return {
        "AG_RUN": str(run_dir),
        "AG_TMP": str(tmp),
        "AG_KEEP": "\n".join(str(p) for p in keep),
        "AG_FRESH": "\n".join(str(d) for d in fresh),
        "AG_HIDE": "\n".join(str(p) for p in hidden),
        "AG_MEM_KB": str(memory_mb * 1024) if memory_mb else "",
        # the home folder is read-only in the sandbox: IPython and matplotlib write here instead
        "IPYTHONDIR": str(run_dir / "work" / ".ipython"),
        "MPLCONFIGDIR": str(run_dir / "work" / ".matplotlib"),
    }


@functools.cache
def available() -> Isolation:
    """Probe once which level works: start a Python under it and read a marker back."""
    if not sys.platform.startswith("linux"):
        return Isolation("none", f"no namespaces on {sys.platform}")
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return Isolation("none", f"{', '.join(missing)} not installed")
    import tempfile

    probe = [sys.executable, "-c", "import os; print('ok:' + os.getcwd())"]
    with tempfile.TemporaryDirectory(prefix="ag-probe-") as tmp:
        run = Path(tmp)
        (run / "work").mkdir()
        (run / "stage").mkdir()
        env = {**os.environ, **env_for(run, [], None)}
        errors = []
        for level in ("full", "network"):
            try:
                out = subprocess.run(wrap(probe, level), env=env, capture_output=True, text=True,
                                     timeout=30, cwd=run)
            except (OSError, subprocess.TimeoutExpired) as err:
                errors.append(f"{level}: {err}")
                continue
            if out.returncode == 0 and out.stdout.startswith("ok:"):
                return Isolation(level, "; ".join(errors))
            errors.append(f"{level}: {(out.stderr.strip().splitlines() or ['failed'])[-1]}")
    return Isolation("none", "; ".join(errors))
