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
