"""A real browser runs notebook 00 in JupyterLab: the token strip shows accepted and rejected tokens, hovering one
shows p and q, and a plotly figure renders. Saves a screenshot to build/browser_quickstart.png.

Uses Debian's chromium through python playwright (``make test`` installs chromium when it is missing). JupyterLab
serves a copy of the notebook from build/, so autosave never touches the committed file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
BUILD = ROOT / "build"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("LABKIT_BROWSER_REQUIRED"):
            pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (make test does)")
        pytest.skip(f"{CHROMIUM} missing (make test installs it)")
    pytest.importorskip("playwright")
    work = BUILD / "browser"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work)
    home = tmp_path_factory.mktemp("lab")
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "news" / update toasts over the screenshot.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "labkit-browser-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws")}
    env.pop("LABKIT_CI", None)  # the notebook as a reader runs it
    log = open(home / "lab.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--allow-root", "--expose-app-in-browser",
         f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(home / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not start in 60 s")
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_quickstart_in_chromium(lab):
    from playwright.sync_api import sync_playwright

    base, token, work = lab
    shot = BUILD / "browser_quickstart.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{base}/lab/tree/00_quickstart.ipynb?token={token}")
            page.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # The kernel must be up before "run all" (otherwise the command is a no-op).
            page.wait_for_function(
                "() => { const w = window.jupyterapp.shell.currentWidget; return w && w.sessionContext"
                " && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=90_000)
            # Room for the notebook in the screenshot: close the file browser.
            page.evaluate("window.jupyterapp.shell.collapseLeft()")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".lk-strip .lk-tok.lk-accepted", timeout=180_000)
            page.wait_for_selector(".lk-strip .lk-tok.lk-rejected", timeout=180_000)
            # The last cell is the check: it prints a tick when every assert held.
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                ".some(e => e.innerText.includes('✓ the strip shows'))", timeout=240_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
            assert not tracebacks, tracebacks
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            n_plots = page.locator(".js-plotly-plot").count()
            assert n_plots >= 3, f"expected the dashboard's plotly figures, found {n_plots}"
            n_acc = page.locator(".lk-strip .lk-tok.lk-accepted").count()
            n_rej = page.locator(".lk-strip .lk-tok.lk-rejected").count()
            assert n_acc > 0 and n_rej > 0
            # Hover shows the numbers (the tip is CSS ::after content from data-tip).
            tok = page.locator(".lk-strip .lk-tok.lk-accepted").first
            tok.scroll_into_view_if_needed()
            tok.hover()
            tip = tok.evaluate("e => getComputedStyle(e, '::after').content")
            assert "p(x)" in tip and "q(x)" in tip, tip
            page.locator(".lk-strip").first.scroll_into_view_if_needed()
            BUILD.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
