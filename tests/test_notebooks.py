"""The notebooks run top to bottom in a fresh kernel of this environment, without errors.

Each notebook is executed with nbclient in a kernel started from ``sys.executable`` (a temporary
kernelspec, so a ``python3`` kernel registered elsewhere on the machine cannot be picked up by
mistake), with the notebook's folder as working directory and one thread per library, as the
rest of the test suite.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

_HOW = "install the notebook test tools: pip install nbclient ipykernel"
nbformat = pytest.importorskip("nbformat", reason=f"nbformat is not installed ({_HOW})")
nbclient = pytest.importorskip("nbclient", reason=f"nbclient is not installed ({_HOW})")
pytest.importorskip("ipykernel", reason=f"ipykernel is not installed: no kernel to run notebooks ({_HOW})")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300  # generous: one cell runs all simulated users against the model
NOTEBOOK_BUDGET_S = 300  # the issue asks for "a few minutes on CPU"; this machine takes about 15 s


def _kernel_manager(tmp_path: Path):
    """An async kernel manager whose only kernelspec runs ipykernel with this interpreter."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    name = "nni-widget-test"
    spec_dir = tmp_path / "kernels" / name
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "nni_widget tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)


def _run(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    env_threads = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({v: "1" for v in env_threads})  # inherited by the kernel
    try:
        client = nbclient.NotebookClient(
            nb,
            km=_kernel_manager(tmp_path),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(path.parent)}},
        )
        t0 = time.perf_counter()
        client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
        seconds = time.perf_counter() - t0
    finally:
        for var, value in env_threads.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return nb, seconds


def _text_outputs(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
    return "\n".join(out)


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, (
                    f"{path.name} cell {i} has outputs: strip them before committing "
                    "(jupyter nbconvert --clear-output --inplace)"
                )


def test_02_simulation_runs(tmp_path: Path):
    path = NOTEBOOKS / "02_simulation.ipynb"
    nb, seconds = _run(path, tmp_path)
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.name} took {seconds:.0f} s (budget {NOTEBOOK_BUDGET_S} s)"

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"
    text = _text_outputs(nb)

    # the Dice table: one "final Dice" line per (object, user), each with a Dice in [0, 1]
    finals = [line.split() for line in text.splitlines() if line.startswith("final Dice")]
    users = {fields[3] for fields in finals}
    assert users == {"random", "sunk_cost", "single"}, f"final Dice lines: {finals}"
    for fields in finals:
        assert 0.0 <= float(fields[4]) <= 1.0, fields
    assert "step 5" in text, "the Dice-per-step table should have a column per step"

    # the figures were drawn (matplotlib's inline backend records PNGs)
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 8, f"expected the step-by-step figures, got {pngs} images"


def test_03_training_runs(tmp_path: Path):
    path = NOTEBOOKS / "03_training.ipynb"
    nb, seconds = _run(path, tmp_path)
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.name} took {seconds:.0f} s (budget {NOTEBOOK_BUDGET_S} s)"

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"
    text = _text_outputs(nb)

    # the run trained and exported a model in the official layout
    trained = [line.split() for line in text.splitlines() if line.startswith("steps trained:")]
    assert trained and int(trained[0][2]) >= 10, trained
    assert "plans.json" in text and "fold_0" in text and "train_log.csv" in text
    # predictions of both models, each with a Dice in [0, 1]
    dices = [line.split() for line in text.splitlines() if line.startswith("Dice ")]
    assert len(dices) >= 4, dices
    assert all(0.0 <= float(fields[-1]) <= 1.0 for fields in dices)
    assert "held-out phantom Dice of the tiny model" in text

    # figures: augmentation, sample channels, loss curve, predictions (+ real data when fetched)
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 4, f"expected the figures, got {pngs} images"


def test_04_evaluation_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = NOTEBOOKS / "04_evaluation.ipynb"
    # a reduced run: the quick suite's first two cases (phantoms); the kernel inherits the environment
    monkeypatch.setenv("NNI_EVAL_NOTEBOOK_CASES", "2")
    monkeypatch.setenv("NNI_EVAL_NOTEBOOK_OUT", str(tmp_path / "results"))
    monkeypatch.delenv("NNI_OFFICIAL_WEIGHTS", raising=False)
    nb, seconds = _run(path, tmp_path)
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.name} took {seconds:.0f} s (budget {NOTEBOOK_BUDGET_S} s)"

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"
    text = _text_outputs(nb)
    assert text.count("case phantom/") == 2, "the reduced run has the first two (phantom) cases"
    for name in ("nni_widget engine", "random walker", "marker watershed"):
        assert f"method {name}:" in text
    assert "skipped official: no official checkpoint" in text
    # the results table (Markdown output) and the files the CLI would write
    tables = "\n".join(o["data"].get("text/markdown", "") for c in nb.cells for o in c.get("outputs", [])
                       if "data" in o)
    assert "| marker watershed | lasso |" in tables and "Dice 1st" in tables
    for name in ("results.csv", "results.json", "results.md", "dice_by_prompt.png", "dice_by_method.png"):
        assert (tmp_path / "results" / name).is_file(), name
    # curves by prompt and by method, one qualitative figure per prompt kind and one after the clicks
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 7, f"expected the curves and the qualitative figures, got {pngs} images"


def test_01_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = NOTEBOOKS / "01_quickstart.ipynb"
    out = tmp_path / "quickstart"
    monkeypatch.setenv("NNI_QUICKSTART_OUT", str(out))  # the kernel inherits it: files land here
    nb, seconds = _run(path, tmp_path)
    assert seconds < NOTEBOOK_BUDGET_S, f"{path.name} took {seconds:.0f} s (budget {NOTEBOOK_BUDGET_S} s)"

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"
    text = _text_outputs(nb)

    # the label map saved from Python: two objects on the sample's grid
    import numpy as np

    from nni_widget.data import sample_volume
    from nni_widget.io import load_volume

    saved = load_volume(out / "out.nii.gz")
    assert saved.shape == sample_volume().shape
    assert set(int(v) for v in np.unique(saved.array)) == {0, 1, 2}
    assert (out / "autosave" / "labels.nii.gz").is_file(), "the autosave example writes its file"
    assert "resumed 1 objects" in text
    # the robot's replay: five steps with a Dice each
    replay = [line for line in text.splitlines() if line.startswith("step ") and "Dice" in line]
    assert len(replay) == 5, replay
    # the widgets were displayed (they have no front-end here, but their views are in the outputs)
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in nb.cells for o in c.get("outputs", []))
    assert views >= 3, f"expected the Annotator and two replay views, got {views} widget outputs"
