"""A learner's path in a real browser: JupyterLab in headless Chromium, driven by Playwright.

The test copies the welcome lecture and two assignments into a temporary folder (so nothing in the
repository is changed), serves that folder with the same `jupyter lab` command as `make lab`,
opens each notebook, runs all cells, and checks what a learner would see: the lecture runs without
an error output and its tokenizer box answers typing; the released assignment's setup runs and the
first error is the stub's NotImplementedError. Screenshots go to build/. Playwright drives the
system's Chromium (`executable_path`): no browser is ever downloaded.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from llmlab import PROJECT_ROOT
from llmlab.setup import kernel_env, lab_command, write_learner_config

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUILD = PROJECT_ROOT / "build"
NOTEBOOKS = ["course/00_welcome.ipynb", "assignments/00_welcome/00_welcome.ipynb",
             "assignments/01_ml_basics/01_ml_basics.ipynb"]
# JupyterLab settings for the test: no news or update checks (no request leaves the machine) and
# every cell attached to the page, so each output can be found in it.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

OPEN_NOTEBOOK = """async (path) => {
    const app = window.jupyterapp;
    await app.started;
    await app.restored;
    const panel = await app.commands.execute("docmanager:open", {path});
    await panel.context.ready;
    await panel.sessionContext.ready;
    return panel.sessionContext.session.kernel.name;
}"""
RUN_ALL = """async () => {
    const app = window.jupyterapp;
    await app.commands.execute("notebook:run-all-cells");
    const panel = app.shell.currentWidget;
    while (panel.sessionContext.session.kernel.status !== "idle") {
        await new Promise(resolve => setTimeout(resolve, 200));
    }
    const model = panel.content.model, cells = [];
    for (let i = 0; i < model.cells.length; i++) {
        const cell = model.cells.get(i);
        if (cell.type !== "code") continue;
        cells.push({id: cell.id, count: cell.executionCount,
                    outputs: cell.outputs.toJSON().map(o => ({type: o.output_type, name: o.name,
                                                               ename: o.ename, text: o.text}))});
    }
    return cells;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free loopback port, serving copies of the notebooks; yields its base URL."""
    root = tmp_path / "course-copy"
    for name in NOTEBOOKS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, root / name)
    settings = tmp_path / "settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values), encoding="utf-8")
    env = {**os.environ, **kernel_env(),
           "JUPYTER_CONFIG_PATH": str(write_learner_config(tmp_path / "config")),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    port, token = _free_port(), "browser-test"
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = lab_command(port, browser=False, is_root=is_root, token=token, root=root)
    cmd.append("--LabApp.expose_app_in_browser=True")  # lets the test call JupyterLab's commands
    log = open(tmp_path / "jupyterlab.log", "w")  # closed in the finally block
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _counts(page) -> list[int]:
    return [int(t) for t in page.locator(".llmlab-token-count").all_inner_texts()]


@pytest.mark.slow
def test_a_learner_runs_the_welcome_lecture_and_an_assignment_in_chromium(lab):
    if not CHROMIUM.exists():
        pytest.fail(f"the browser test needs Debian's Chromium at {CHROMIUM}: run `{INSTALL}` "
                    "as root (no browser is downloaded by any test tool)")
    from playwright.sync_api import sync_playwright

    base, token = lab
    BUILD.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab?token={token}")
            page.wait_for_function("window.jupyterapp !== undefined")

            # The welcome lecture: every cell runs, none shows an error or writes to stderr.
            assert page.evaluate(OPEN_NOTEBOOK, "course/00_welcome.ipynb") == "python3"
            cells = page.evaluate(RUN_ALL)
            assert cells and all(c["count"] for c in cells), "every code cell of 00 ran"
            problems = [(c["id"], o) for c in cells for o in c["outputs"]
                        if o["type"] == "error" or o.get("name") == "stderr"]
            assert not problems, f"the welcome lecture showed errors or stderr: {problems}"

            # Its tokenizer box answers typing: the counts follow the new text.
            box = page.locator(".llmlab-tokenizer-box textarea")
            box.scroll_into_view_if_needed()
            before = _counts(page)
            assert len(before) == 3, "three encodings are counted"
            text = "Widgets respond: 你好，世界！ " * 3
            box.fill(text)
            page.wait_for_function(
                f"document.querySelector('.llmlab-token-count').textContent === '{len(text)}'")
            after = _counts(page)
            assert after[0] == len(text) and after[1] == len(text.encode("utf-8"))
            assert after != before
            page.screenshot(path=str(BUILD / "browser-00_welcome.png"))

            # The released assignment: the setup cell runs; the first error is the first stub's.
            page.evaluate(OPEN_NOTEBOOK, "assignments/01_ml_basics/01_ml_basics.ipynb")
            cells = page.evaluate(RUN_ALL)
            ran = [c for c in cells if c["count"]]
            errors = [o for c in ran for o in c["outputs"] if o["type"] == "error"]
            assert len(ran) >= 2 and not any(o["type"] == "error" for o in ran[0]["outputs"])
            assert errors and errors[0]["ename"] == "NotImplementedError", errors[:1]
            page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                         ).first.scroll_into_view_if_needed()
            page.screenshot(path=str(BUILD / "browser-01_ml_basics.png"))
        finally:
            browser.close()
