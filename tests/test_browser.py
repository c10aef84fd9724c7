"""End to end in a real browser: JupyterLab 4 runs notebook 05 in smoke mode in headless Chromium (Debian's package), driven
by Playwright; the confusion-matrix explorer must render live, redraw for another device, and no cell may show an error.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Playwright never downloads a browser here: it
drives Debian's Chromium through `executable_path`. Skipped when Chromium is absent, except with ASC_REQUIRE_SHARED=1 (CI),
where that is a failure. Screenshots go to the test's tmp_path and are copied to outputs/browser/ for people to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_baseline_training.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
EXPLORER = ".jupyter-widgets.asc-confusion-explorer"
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
# Lab settings for a clean, quiet, fully rendered page: no news/update requests, every cell in the DOM (no windowing).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _require_chromium() -> None:
    """Skip without Debian's Chromium (or Playwright), but fail instead where ASC_REQUIRE_SHARED=1, as in CI."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} not found (install Debian's package: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python is not installed (pip install -e '.[test]')")
    if missing:
        message = "browser test needs " + "; ".join(missing)
        if os.environ.get("ASC_REQUIRE_SHARED") == "1":
            pytest.fail(message + " - ASC_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server: its base URL, token and log file."""

    url: str
    token: str
    log: Path

    def api(self, path: str, method: str = "GET") -> object:
        """Call the server's REST API; returns the decoded JSON (None for an empty answer)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log (for failure messages)."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def jupyter_lab(root: Path, work: Path) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1 (random free port, a token, isolated config/settings) serving `root`; stop it afterwards."""
    for relative, values in LAB_SETTINGS.items():
        path = work / "lab-settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    runtime = work / "runtime"
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "ASC_WIDGETS", "JPY_SESSION_NAME")}
    env |= {"JUPYTER_CONFIG_DIR": str(work / "config"), "JUPYTER_DATA_DIR": str(work / "data"), "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTERLAB_SETTINGS_DIR": str(work / "lab-settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
            "IPYTHONDIR": str(work / "ipython")}
    port, token = _free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token, work / "jupyterlab.log")
    command = [sys.executable, "-m", "jupyterlab", "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    with lab.log.open("wb") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {server.returncode} while starting:\n{lab.log_tail()}")
            with contextlib.suppress(OSError):
                lab.api("/api/status")
                break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {lab.url} within 90 s:\n{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        with contextlib.suppress(OSError, urllib.error.URLError):  # kernels run in their own sessions: stop them explicitly
            for kernel in lab.api("/api/kernels"):
                lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    left = sorted(p.name for p in runtime.glob("kernel-*.json"))
    assert not left, f"kernels still registered after JupyterLab stopped: {left}"


def parameterised_copy(notebook: Path, folder: Path, parameters: dict) -> Path:
    """Write the notebook into folder with papermill's injected-parameters cell after its `parameters` cell."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(notebook)), parameters)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / notebook.name
    nbformat.write(nb, target)
    return target


def _prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()


def _cell_errors(page) -> list[str]:
    """Texts of error outputs (tracebacks) and widgets that failed to render."""
    errors = [t for t in page.locator(STDERR).all_inner_texts() if "Traceback" in t or re.search(r"^\w*(Error|Exception)\b", t, re.M)]
    broken = page.get_by_text("Error displaying widget")
    return errors + [f"{broken.count()} widget(s) failed to render"] * (broken.count() > 0)


# The notebook's kernel, through the app object that --LabApp.expose_app_in_browser puts on window (the toolbar's
# execution indicator reads 'idle' before the kernel has even started, so it cannot tell when the kernel is ready).
KERNEL_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return kernel ? kernel.status + '/' + kernel.connectionStatus : 'none';
}"""


def run_all_cells(page, timeout_s: float) -> list[str]:
    """Wait for the kernel, click Run > Run All Cells, wait until every code cell has run (or one failed); return the prompts."""
    page.wait_for_function(f"() => ({KERNEL_STATE})() === 'idle/connected'", timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        if _cell_errors(page):
            break
        if page.evaluate(KERNEL_STATE) == "idle/connected" and prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts):
            return prompts
        time.sleep(1)
    return _prompts(page)


def _image_src(explorer) -> str:
    return explorer.locator("img").first.get_attribute("src") or ""


def check_notebook_in_browser(notebook: Path, data_dir: Path, out_dir: Path, timeout_s: float = 200) -> list[Path]:
    """Open the notebook in JupyterLab in headless Chromium, run all cells in smoke mode, exercise the confusion explorer."""
    from playwright.sync_api import sync_playwright

    root = out_dir / "lab-root"
    copy = parameterised_copy(notebook, root, {"SMOKE": True, "DATA_DIR": str(data_dir)})
    shots = [out_dir / "jupyterlab_notebook.png", out_dir / "confusion_explorer.png"]
    with jupyter_lab(root, out_dir) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.goto(f"{lab.url}/lab/tree/{copy.name}?token={lab.token}", timeout=120_000)
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=120_000)
            prompts = run_all_cells(page, timeout_s)
            errors = _cell_errors(page)
            assert not errors, "cells failed in the browser:\n" + "\n---\n".join(errors)[-3000:]
            assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), f"not every cell ran within {timeout_s} s: {prompts}"

            explorer = page.locator(EXPLORER)
            assert explorer.count() == 1, (f"{notebook.name} shows no live confusion-matrix explorer: it must display "
                                           "asc_utils.widgets.confusion_explorer(...), and widgets_live() must detect JupyterLab")
            select = explorer.locator(".jupyter-widgets select").first
            options = select.locator("option").all_inner_texts()
            current = select.evaluate("s => s.options[s.selectedIndex].text")
            other = "s4" if "s4" in options and current != "s4" else next(o for o in options if o != current)
            explorer.scroll_into_view_if_needed()
            caption, src = explorer.locator(".widget-html").first.inner_text(), _image_src(explorer)
            select.select_option(label=other)
            page.wait_for_function("([el, src]) => el.querySelector('img').src !== src && el.querySelector('img').complete",
                                   arg=[explorer.element_handle(), src], timeout=60_000)
            new_caption = explorer.locator(".widget-html").first.inner_text()
            assert new_caption != caption and f"device {other}" in new_caption, (caption, new_caption)
            assert explorer.locator("img").first.evaluate("img => img.naturalWidth") > 300, "the new figure did not load"
            assert not _cell_errors(page)
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(shots[0]))
            explorer.screenshot(path=str(shots[1]))
        finally:
            browser.close()
    return shots


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_notebook_05_widgets_in_jupyterlab(tiny_data: Path, tmp_path: Path) -> None:
    _require_chromium()
    started = time.monotonic()
    shots = check_notebook_in_browser(NOTEBOOK, tiny_data, tmp_path)
    keep = REPO / "outputs" / "browser"
    keep.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copy2(shot, keep / shot.name)
        print(f"screenshot: {keep / shot.name}")
    print(f"browser test wall time: {time.monotonic() - started:.1f} s")
