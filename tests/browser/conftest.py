"""Browser tests: a real JupyterLab server, a notebook opened in headless Chromium (Debian's
``chromium`` package driven by Playwright), real mouse strokes on the widget's canvases.

The kernel's state is read from the widget's autosave files (written by the kernel's background
writer after every change), so the assertions are about what the kernel holds, not what the page
believes. The writer runs behind the worker, so before reading the kernel's labels the harness waits
until the files describe the page's current ``label_version`` (``Notebook.wait_saved``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

CHROMIUM = os.environ.get("NNI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "nni-widget-test"

# The notebook the tests open. Cell 1 makes the widget (with a fault injector that lives only in
# this test notebook: files FAIL_NEXT / SLOW in the notebook folder make the next forward raise or
# crawl), cell 2 shows a second view of the same widget.
CELL_SETUP = """\
import os, time
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
from nni_widget.widget import Annotator
from nni_widget.data import sample_volume

ann = Annotator(sample_volume(), autosave="work.nii.gz", view_size=260)
_forward = ann.session.runtime.forward
def _faulty_forward(*args, **kwargs):
    if os.path.exists("FAIL_NEXT"):
        os.remove("FAIL_NEXT")
        raise RuntimeError("injected failure")
    if os.path.exists("SLOW"):
        time.sleep(1.0)
    return _forward(*args, **kwargs)
ann.session.runtime.forward = _faulty_forward
ann"""
CELL_SECOND_VIEW = "ann"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright (pip) drives the browser")
    pytest.importorskip("jupyterlab", reason="the browser tests run the widget in JupyterLab")


@contextlib.contextmanager
def jupyterlab(root: Path):
    """Run a JupyterLab server on a free port serving ``root``; yields its base URL."""
    port = _free_port()
    # never ask which kernel to start (the dialog raced with "Run All" and replaced the kernel)
    tracker = root / ".settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".cfg"), JUPYTER_RUNTIME_DIR=str(root / ".rt"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".ws"), JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
               OMP_NUM_THREADS="1")
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.news_url=None"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + (root / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server serving a fresh folder with the test notebook."""
    _need_browser()
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root / "widget.ipynb", [CELL_SETUP, CELL_SECOND_VIEW])
    with jupyterlab(root) as url:
        yield {"url": url, "root": root}


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Notebook:
    """The opened test notebook and helpers to draw on the widget and read the kernel's state."""

    def __init__(self, page, root: Path):
        self.page = page
        self.root = root
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(m.text))

    # ---------------------------------------------------------------- page
    def open(self, url: str, name: str = "widget.ipynb") -> None:
        self.page.goto(f"{url}/lab/tree/{name}?token={TOKEN}")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)

    def run_all(self, n_views: int = 2) -> None:
        """Run every cell once the kernel is idle; retry if the kernel changed under the run."""
        idle = ("() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                " return s && s.getAttribute('data-status') === 'idle'; }")
        started = ("() => [...document.querySelectorAll('.jp-Cell .jp-InputPrompt')]"
                   ".some(p => /[*0-9]/.test(p.textContent))")
        last = None
        for _attempt in range(3):
            for _ in range(6):
                self.dismiss_dialogs()
                try:
                    self.page.wait_for_function(idle, timeout=30_000)
                except Exception:
                    pass  # older JupyterLab without the indicator: just go on
                self.page.click(".lm-MenuBar-itemLabel:text-is('Run')")
                self.page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
                try:
                    self.page.wait_for_function(started, timeout=10_000)
                    break
                except Exception:
                    self.page.keyboard.press("Escape")
            try:
                self.wait_ready(n_views)
                return
            except AssertionError as e:
                last = e
                # a page whose first kernel websocket failed (jupyter_server answered 500 while the
                # kernel was starting, seen once on a cold machine) shows "Error displaying widget:
                # model not found" however often the cells run: reconnect it by reloading
                self.console.append("retrying Run All after reloading the page")
                self.page.reload()
                self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        raise last

    def dismiss_dialogs(self) -> None:
        """Accept a JupyterLab dialog (kernel choice, ...) that would block the clicks."""
        for _ in range(3):
            dialog = self.page.locator(".jp-Dialog")
            if not dialog.count():
                return
            self.console.append("dialog: " + dialog.first.inner_text()[:300].replace("\n", " | "))
            self.page.locator(".jp-Dialog .jp-mod-accept").first.click()
            self.page.wait_for_timeout(300)

    def diagnose(self) -> str:
        """What the page shows (notebook text and console), for failure messages."""
        self.page.screenshot(path=str(self.root / "failure.png"))
        try:
            text = self.page.inner_text(".jp-Notebook")[-3000:]
        except Exception as e:  # the page itself may be gone
            text = f"(no notebook text: {e})"
        return f"notebook:\n{text}\nconsole:\n" + "\n".join(self.console[-20:])

    def wait_ready(self, n_views: int = 2, timeout: float = 90_000) -> None:
        try:
            self.page.wait_for_function(
                f"document.querySelectorAll(\".nni-root[data-ready='1']\").length >= {n_views}", timeout=timeout)
        except Exception as e:
            raise AssertionError(f"the widget did not render: {e}\n{self.diagnose()}") from None
        self.page.wait_for_function(
            "[...document.querySelectorAll('.nni-root')].every(r => r.dataset.labelVersion !== undefined)"
            " && [...document.querySelectorAll('.nni-view')].filter(v => v.style.display !== 'none')"
            ".every(v => v.dataset.loaded === '1')", timeout=60_000)

    def root_sel(self, k: int = 0) -> str:
        return f":nth-match(.nni-root, {k + 1})"

    def view(self, axis: int, k: int = 0):
        return self.page.locator(self.root_sel(k)).locator(f".nni-view[data-axis='{axis}']")

    def js(self, expr: str, arg=None, k: int = 0):
        """Evaluate ``expr`` with ``root`` (the widget element), ``host`` and ``arg`` in scope."""
        return self.page.evaluate(
            "([k, arg]) => { const root = document.querySelectorAll('.nni-root')[k]; const host = root.__nni; "
            f"return ({expr}); }}", [k, arg])

    def client(self, axis: int, r: float, c: float, k: int = 0) -> tuple[float, float]:
        return tuple(self.js("host.views[arg[0]].voxelToClient(arg[1], arg[2])", [int(axis), float(r), float(c)], k))

    def set_slice(self, axis: int, index: int, k: int = 0) -> None:
        axis, index = int(axis), int(index)
        self.js("host.setSlice(arg[0], arg[1])", [axis, index], k)
        self.page.wait_for_function(
            "([k, a, i]) => { const v = document.querySelectorAll('.nni-root')[k].__nni.views[a];"
            " return v.index === i && v.hasImage; }", arg=[k, axis, index], timeout=20_000)
        self.page.wait_for_timeout(50)

    def choose(self, tool: str, positive: bool = True, k: int = 0) -> None:
        root = self.page.locator(self.root_sel(k))
        root.locator(f"button[data-tool='{tool}']").click()
        if (root.get_attribute("data-positive") == "1") != positive:
            root.locator(".nni-polarity").click()
        self.page.wait_for_function(
            "([k, t, p]) => { const r = document.querySelectorAll('.nni-root')[k];"
            " return r.dataset.tool === t && r.dataset.positive === p; }", arg=[k, tool, "1" if positive else "0"])

    def stroke(self, axis: int, points, k: int = 0, shift: bool = False) -> None:
        """Press, move through ``points`` ((row, col) voxel coordinates of the view's slice), release."""
        m = self.page.mouse
        xy = [self.client(axis, r, c, k) for r, c in points]
        if shift:
            self.page.keyboard.down("Shift")
        m.move(*xy[0])
        m.down()
        for x, y in xy[1:]:
            m.move(x, y, steps=3)
        m.up()
        if shift:
            self.page.keyboard.up("Shift")

    # ---------------------------------------------------------------- kernel state (autosave)
    def saved(self) -> dict:
        side = self.root / "work.nni.npz"
        if not side.exists():
            return {"objects": []}
        for _ in range(20):  # the kernel renames a finished file into place; retry a torn read
            try:
                with np.load(side) as z:
                    meta = json.loads(bytes(z["meta"]).decode())
                    meta["arrays"] = {k: z[k] for k in z.files if k != "meta"}
                return meta
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise AssertionError("cannot read the autosave sidecar")

    def n_prompts(self) -> int:
        """The number of prompts the kernel holds, once the autosave has caught up with the page."""
        return sum(len(o["prompts"]) for o in self.wait_saved()["objects"])

    def wait_saved(self, k: int = 0, timeout: float = 60.0) -> dict:
        """Wait until the kernel is idle, the page has applied its last label patch and the autosave
        files describe that ``label_version`` (the page root's ``data-label-version``); returns them.

        A rename or a new object does not change the label version: wait for those with
        :meth:`wait_kernel` and a predicate."""
        self.wait_idle(k)
        version = int(self.page.locator(self.root_sel(k)).get_attribute("data-label-version"))
        deadline = time.time() + timeout
        while True:
            s = self.saved()
            if s.get("label_version", 0) >= version:
                return s
            if time.time() > deadline:
                raise AssertionError(f"the autosave still describes label version {s.get('label_version')}, "
                                     f"the page shows {version}\n{self.diagnose()}")
            time.sleep(0.1)

    def wait_kernel(self, predicate, timeout: float = 60.0, what: str = "kernel state") -> dict:
        deadline = time.time() + timeout
        while True:
            s = self.saved()
            if predicate(s):
                return s
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last state: "
                                     f"{[(o['name'], len(o['prompts'])) for o in s['objects']]}\n"
                                     f"{self.diagnose()}")
            time.sleep(0.2)

    def wait_idle(self, k: int = 0) -> None:
        """Wait until the kernel is idle and the page has applied every label patch it announced
        (patches decode asynchronously, so 'not busy' alone can come first)."""
        self.page.wait_for_function(
            "k => { const r = document.querySelectorAll('.nni-root')[k]; const h = r.__nni;"
            " return r.dataset.busy === '0' && h.labelVersion === h.model.get('label_version'); }",
            arg=k, timeout=60_000)

    def kernel_labels(self, shape) -> np.ndarray:
        """The label map the kernel holds (objects in order, later on top), from the autosave."""
        s = self.wait_saved()
        out = np.zeros(shape, dtype=np.uint16)
        for k, o in enumerate(s["objects"]):
            if o["bounds"] is None:
                continue
            size = [hi - lo for lo, hi in o["bounds"]]
            crop = np.unpackbits(s["arrays"][f"mask_{k}"], count=int(np.prod(size))).reshape(size).astype(bool)
            region = out[tuple(slice(lo, hi) for lo, hi in o["bounds"])]
            region[crop] = o["id"]
        return out

    def browser_label_summary(self, k: int = 0) -> dict:
        """Per-label voxel counts and index sums of the label map held by the page."""
        return self.js(
            "(() => { const s = host.store; const [Z, Y, X] = s.shape; const out = {};"
            " for (let z = 0; z < Z; z++) { const slab = s.slabs[z]; if (!slab) continue;"
            "  for (let i = 0; i < slab.length; i++) { const l = slab[i]; if (!l) continue;"
            "   const e = out[l] || (out[l] = [0, 0]); e[0] += 1; e[1] += z * Y * X + i; } }"
            " return out; })()", None, k)


def label_summary(labels: np.ndarray) -> dict:
    flat = labels.reshape(-1)
    out = {}
    for lab in np.unique(flat):
        if lab == 0:
            continue
        idx = np.flatnonzero(flat == lab)
        out[str(int(lab))] = [int(idx.size), int(idx.sum())]
    return out


@pytest.fixture(scope="module")
def notebook(lab, browser):
    for f in ("work.nii.gz", "work.nni.npz"):
        (lab["root"] / f).unlink(missing_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    nb = Notebook(page, lab["root"])
    nb.open(lab["url"])
    nb.run_all()
    yield nb
    page.close()
    shutil.rmtree(lab["root"] / ".ws", ignore_errors=True)
