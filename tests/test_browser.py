"""JupyterLab as a user meets it, in a real browser (``make test-browser``; not part of ``make test``).

Debian's ``chromium`` driven by Playwright for Python through ``executable_path`` (no browser is
downloaded). JupyterLab is started the way ``make lab`` starts it, on a copy of the project (its
committed runs and shipped models, so the notebooks find them and nothing is trained): a table
notebook and ``inspect_matches`` are opened from ``notebooks/`` and run; figures must appear as
images, no error output may, the verdict colours must show although the notebook is not trusted,
and the explorer's controls must change its picture. ``ASSIGNLAB_BROWSER_SHOTS=<folder>`` keeps
screenshots there.
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

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "assignlab-browser-check"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the project (notebooks, committed runs, shipped models)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt install chromium)")
    pytest.importorskip("playwright.sync_api")
    project = tmp_path_factory.mktemp("lab") / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    for folder in ("notebooks", "models", "results/runs", "results/notebooks"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, project / folder)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key != "ASSIGNLAB_ROOT"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}", "--notebook-dir=.",
         "--LabApp.default_url=/lab/tree/notebooks", f"--IdentityProvider.token={TOKEN}",
         f"--LabApp.workspaces_dir={project.parent / 'workspaces'}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url, project
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1500, "height": 1100})
        yield tab
        browser.close()


def _shot(page, name: str, element=None) -> None:
    """A screenshot of the page (or of ``element``) into ``$ASSIGNLAB_BROWSER_SHOTS``, when set."""
    folder = os.environ.get("ASSIGNLAB_BROWSER_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (element or page).screenshot(path=str(Path(folder) / f"{name}.png"))


def _open(page, url: str, path: str):
    """Open ``path`` alone in a workspace of its own (JupyterLab would otherwise restore the tabs of
    the last test, and "Run All" would run whichever is current) and return its notebook panel."""
    page.goto(f"{url}/lab/workspaces/{Path(path).stem}-{time.time_ns()}/tree/{path}?token={TOKEN}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook-cell").first.wait_for(timeout=60_000)
    return panel


def _kernels_idle(url: str) -> bool:
    """Whether the server has a kernel and every kernel is idle (JupyterLab's REST API)."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=10) as answer:
        kernels = json.load(answer)
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


def _run_all(page, url: str, timeout_s: float) -> None:
    """Run every cell (the Run menu) and wait until no cell is queued or running and the kernel is idle."""
    deadline = time.time() + 120
    while not _kernels_idle(url):
        assert time.time() < deadline, "the kernel did not start"
        time.sleep(1)
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')", timeout=10_000)
    page.click("div.lm-Menu-itemLabel:text-is('Run All Cells')", timeout=10_000)
    time.sleep(3)
    deadline, quiet = time.time() + timeout_s, 0
    while time.time() < deadline:
        # the kernel is idle for a moment between cells: finished means idle at three polls in a row
        quiet = quiet + 1 if page.locator(".jp-InputArea-prompt:has-text('[*]')").count() == 0 and \
            _kernels_idle(url) else 0
        if quiet == 3:
            return
        time.sleep(2)
    raise AssertionError(f"the notebook did not finish within {timeout_s} s")


def _errors(panel) -> list[str]:
    return panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                        ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()


def test_the_lab_opens_at_the_notebooks_and_reaches_the_executed_copies(lab, page):
    url, _ = lab
    page.goto(f"{url}/?token={TOKEN}")                                  # where make lab's link leads
    page.wait_for_selector(".jp-DirListing-item:has-text('deta_table1.ipynb')", timeout=60_000)
    assert page.url.endswith("/lab/tree/notebooks")
    panel = _open(page, url, "results/notebooks/deta_table1.ipynb")
    assert page.locator("text=Path Not Found").count() == 0
    panel.locator(".jp-RenderedImage img").first.wait_for(timeout=30_000)
    coloured = panel.locator("td[style*='background-color']")
    assert coloured.count() > 0, "the verdict colours are gone in the untrusted executed copy"
    _shot(page, "executed_copy")


def test_a_table_notebook_shows_the_committed_table_without_training(lab, page):
    url, project = lab
    runs_before = sorted(p.name for p in (project / "results" / "runs").rglob("*.json"))
    panel = _open(page, url, "notebooks/deta_table1.ipynb")
    time.sleep(3)
    tab = page.locator(".lm-TabBar-tab.lm-mod-current")
    assert "jp-mod-dirty" not in (tab.first.get_attribute("class") or ""), \
        "the notebook is marked modified as soon as it opens"
    started = time.time()
    _run_all(page, url, timeout_s=180)
    assert time.time() - started < 120
    assert not _errors(panel), _errors(panel)
    assert panel.locator(".jp-RenderedImage img").count() >= 1
    assert panel.locator("text=<Figure size").count() == 0
    assert panel.locator("td[style*='background-color']").count() > 0
    assert sorted(p.name for p in (project / "results" / "runs").rglob("*.json")) == runs_before
    assert not (project / "work-cache").exists() or not list((project / "work-cache").rglob("log.jsonl"))
    assert not (project / "notebooks" / "results").exists()
    _shot(page, "deta_table1")


def test_the_match_explorer_appears_and_every_control_changes_the_picture(lab, page):
    url, project = lab
    panel = _open(page, url, "notebooks/inspect_matches.ipynb")
    started = time.time()
    _run_all(page, url, timeout_s=600)
    assert not _errors(panel), _errors(panel)
    explorer = panel.locator(".widget-vbox").first
    explorer.wait_for(state="attached", timeout=180_000)
    explorer.scroll_into_view_if_needed()      # the notebook renders the cells in view only
    assert not (project / "work-cache").exists() or not list((project / "work-cache").rglob("log.jsonl")), \
        "inspect_matches trained models"
    picture = explorer.locator(".widget-output img").first

    def source() -> str:
        picture.wait_for(timeout=60_000)
        return picture.get_attribute("src")

    before = source()
    _shot(page, "explorer", explorer)
    changes = {
        "image": lambda: explorer.locator(".widget-slider .noUi-handle").first.press("ArrowRight"),
        "method": lambda: explorer.locator("select").nth(0).select_option(index=2),
        "beside it": lambda: explorer.locator("select").nth(1).select_option(index=0),
        "output": lambda: explorer.locator("select").nth(2).select_option(index=0),
        "object": lambda: explorer.locator("select").nth(3).select_option(index=1),
        "score": lambda: explorer.locator(".widget-slider .noUi-handle").nth(1).press("ArrowLeft"),
    }
    for name, change in changes.items():
        change()
        deadline = time.time() + 60
        while source() == before and time.time() < deadline:
            time.sleep(1)
        after = source()
        assert after != before, f"changing {name} did not change the picture"
        before = after
    assert time.time() - started < 900
