"""The two-command setup: pins, CI files, offline assets, and `make lab` really serving."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from llmlab import PROJECT_ROOT
from llmlab.setup import (
    PTH_NAME,
    TORCH_CPU_INDEX,
    index_reachable,
    install_commands,
    kernel_env,
    lab_command,
    no_deps_packages,
    prepare_tiktoken,
    tiktoken_cache_path,
)

ROOT = PROJECT_ROOT


def _pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name, _, version = dep.partition("==")
        assert version, f"{dep} in pyproject.toml is not pinned with =="
        pins[name.lower()] = version
    return pins


def test_environment_yml_carries_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in conda
    pins = _pins()
    # torch comes from conda-forge's CPU-only build, at the same version
    assert f"pytorch-cpu={pins.pop('torch')}" in conda
    assert set(conda) == {"python=3.11", "pip", f"pytorch-cpu={_pins()['torch']}"}
    pip_pins = dict(line.lower().split("==") for line in pip)
    assert pip_pins == pins


def test_no_deps_packages_are_pinned_and_installed():
    listed = no_deps_packages()
    assert listed, "[tool.llmlab] no-deps lists the model packages"
    for requirement in listed:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement} is not pinned with =="
        assert metadata.version(name) == version, f"{name} installed at another version"
        assert name.lower() not in _pins(), f"{name} is also an ordinary dependency"


# Every way of installing the course, and the text that tells learners how.
INSTALLERS = ["Makefile", "postBuild", "README.md", ".github/workflows/ci.yml",
              ".github/templates/classroom.yml"]


@pytest.mark.parametrize("name", INSTALLERS)
def test_every_installer_uses_the_setup_step(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "llmlab.setup install" in text, f"{name} does not install through llmlab.setup"
    bare = [line for line in text.splitlines()
            if "pip install" in line and ("-e" in line.split() or " ." in line)]
    assert not bare, f"{name} runs pip on the project directly (misses the no-deps packages)"


def test_install_takes_torch_from_the_cpu_index_on_linux_only():
    linux = install_commands("py", "linux", dev=True, no_deps=False, cpu_index=TORCH_CPU_INDEX)
    assert linux[0][-3:] == [f"torch=={_pins()['torch']}", "--index-url", TORCH_CPU_INDEX]
    assert linux[1][-2:] == ["-e", ".[dev]"] and "--index-url" not in linux[1]
    assert linux[2][-len(no_deps_packages()) - 1:] == ["--no-deps", *no_deps_packages()]
    for platform in ("darwin", "win32"):
        cmds = install_commands("py", platform, dev=False, no_deps=False,
                                cpu_index=TORCH_CPU_INDEX)
        assert len(cmds) == 2 and cmds[0][-2:] == ["-e", "."]
    offline = install_commands("py", "linux", dev=False, no_deps=False, cpu_index=None)
    assert not any("--index-url" in cmd for cmd in offline)
    binder = install_commands("py", "linux", dev=False, no_deps=True, cpu_index=TORCH_CPU_INDEX)
    assert binder[0][-3:] == ["--no-deps", "-e", "."] and len(binder) == 2


def test_an_unreachable_index_is_skipped_at_once():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert not index_reachable(f"http://127.0.0.1:{port}/whl/cpu/torch/", timeout=3)
    assert not index_reachable("not a url")
    assert time.monotonic() - started < 5


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make lab" in readme
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert "bash .ci/run" in runs


def test_workflow_files_validate_against_the_github_schema():
    files = sorted((ROOT / ".github").rglob("*.yml"))
    assert len(files) >= 2
    proc = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"),
                           "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _network_cut_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", *([] if os.geteuid() == 0 else ["-r"]), "true"],
        capture_output=True).returncode == 0


OFFLINE = ["unshare", "-n", *([] if os.geteuid() == 0 else ["-r"])]
ENCODE = ("import tiktoken; e = tiktoken.get_encoding('cl100k_base'); "
          "print(e.encode('hello world'), e.decode(e.encode('今天我很开心')))")


@pytest.mark.skipif(not _network_cut_available(), reason="cannot cut the network here (unshare)")
def test_plain_tiktoken_works_offline_from_an_empty_cache(tmp_path):
    cache = tmp_path / "tiktoken-cache"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    before = subprocess.run([*OFFLINE, sys.executable, "-c", ENCODE], env=env,
                            capture_output=True, text=True)
    assert before.returncode != 0, "without the prepared cache, offline loading must fail"
    assert not cache.exists() or not any(cache.iterdir())
    prepare_tiktoken(cache)
    assert tiktoken_cache_path("cl100k_base", cache).exists()
    after = subprocess.run([*OFFLINE, sys.executable, "-c", ENCODE], env=env,
                           capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "[15339, 1917] 今天我很开心"


@pytest.mark.skipif(not _network_cut_available(), reason="cannot cut the network here (unshare)")
def test_tiktoken_works_offline_from_the_interpreter_with_no_variable(tmp_path):
    """A plain `python -c`, a terminal script or an editor's interpreter: no TIKTOKEN_CACHE_DIR,
    an empty temp folder (a stale copy in the shared /tmp must not count), no network."""
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run([*OFFLINE, sys.executable, "-c", ENCODE], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[15339, 1917] 今天我很开心"
    startup = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    assert str(ROOT / ".cache" / "tiktoken") in startup.read_text()
    assert not any(tmp_path.iterdir()), "tiktoken wrote to the temp folder"


def test_kernels_find_the_project_cache():
    spec = json.loads((Path(sys.prefix) / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert spec["env"] == kernel_env()
    assert Path(spec["env"]["TIKTOKEN_CACHE_DIR"]).is_relative_to(ROOT)


def test_lab_command_options():
    cmd = lab_command(port=9999, browser=False, is_root=True, token="abc")
    assert "--port=9999" in cmd and "--no-browser" in cmd and "--allow-root" in cmd
    assert "--IdentityProvider.token=abc" in cmd
    cmd = lab_command(port=8888, browser=True, is_root=False)
    assert "--no-browser" not in cmd and "--allow-root" not in cmd


def test_second_setup_skips_the_install():
    proc = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "setup install" not in proc.stdout and "venv" not in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lab_restores_a_deleted_tiktoken_cache_before_starting(tmp_path, monkeypatch):
    from llmlab import setup

    cache = tmp_path / "tiktoken"
    monkeypatch.setattr(setup, "PROJECT_ROOT", tmp_path)  # prepare prints paths relative to it
    monkeypatch.setattr(setup.prepare_tiktoken, "__defaults__", (cache,))
    for writer in ("write_kernelspec", "write_startup_file", "write_learner_config"):
        monkeypatch.setattr(setup, writer, lambda: tmp_path)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # lab sets the kernel's variables
    monkeypatch.setattr(os, "chdir", lambda path: None)

    class Started(Exception):
        pass

    def start(*args):
        raise Started

    monkeypatch.setattr(os, "execv", start)
    monkeypatch.setattr(subprocess, "call", start)
    with pytest.raises(Started):
        setup.lab(port=_free_port(), browser=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        setup.tiktoken_cache_path(e, cache).name for e in setup.ENCODINGS)


@pytest.mark.slow
def test_make_lab_serves_jupyterlab():
    port = _free_port()
    proc = subprocess.Popen(["make", "lab", f"PORT={port}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                # /api/status needs the token JupyterLab prints; its absence must give 403,
                # and the lab page itself must answer.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=2) as r:
                    status = r.status
                    break
            except urllib.error.HTTPError as err:
                status = err.code
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()
        assert status in (200, 302, 403), f"no answer from JupyterLab on port {port}"
        printed = ""
        while "?token=" not in printed:  # the URL a learner is told to open, printed first
            printed = proc.stdout.readline()
            assert printed, "make lab printed no URL with a token"
        token = printed.split("?token=")[1].strip()
        assert token == _token(port)
        with urllib.request.urlopen(printed.strip(), timeout=5) as r:
            assert r.status == 200, "the printed URL opens the welcome notebook"
            page = r.read().decode()
        disabled = _page_config(page)["disabledExtensions"]
        for plugin in ("create-assignment", "formgrader", "course-list"):
            assert f"@jupyter/nbgrader:{plugin}" in disabled, "instructor tools are hidden"
        assert "@jupyter/nbgrader:validate-assignment" not in disabled
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5) as r:
            body = json.loads(r.read())
        assert "started" in body and body.get("kernels") == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _page_config(page: str) -> dict:
    start = page.index('id="jupyter-config-data"')
    body = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(body)


def test_formgrader_command_needs_a_grading_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "formgrader", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "gradebook.db" in proc.stderr


def _token(port: int) -> str:
    out = subprocess.run([sys.executable, "-m", "jupyter", "server", "list", "--json"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        info = json.loads(line)
        if info.get("port") == port:
            return info.get("token", "")
    raise AssertionError(f"no running server on port {port} in `jupyter server list`")


def test_code_passes_ruff():
    proc = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "autograder",
                           "llmlab", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
