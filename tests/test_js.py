"""The front-end's own checks: Biome (lint and format of js/) and its unit tests (``node --test``, js/tests/).

The JS decoder and label store are checked against vectors made here by the real Python encoder
(``nni_widget.widget._codec``), written into a temporary directory that ``npm test`` reads through
``NNI_JS_FIXTURES``. By hand: ``python tests/test_js.py DIR`` then ``NNI_JS_FIXTURES=DIR npm test``.

Biome comes from node_modules: ``pip install -e .`` already ran ``npm install`` here (hatch-jupyter-builder's
editable build always does); otherwise these tests run ``npm ci`` once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nni_widget.widget._annotator import PALETTE
from nni_widget.widget._codec import ImageQuantizer, encode, nonzero_bounds

ROOT = Path(__file__).resolve().parents[1]
NODE, NPM = shutil.which("node"), shutil.which("npm")

needs_node = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are not installed (.ci/run installs them)"
)


def _le_bytes(a: np.ndarray) -> bytes:
    """The array's little-endian bytes in C order: what the browser's typed array must hold."""
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def _codec_cases() -> dict[str, tuple[np.ndarray, int]]:
    """name -> (array, zlib level): every dtype, edge values, empty and 0-d arrays, non-C-order and
    big-endian input, a real label patch and image slice, and data big enough for several deflate blocks."""
    rng = np.random.default_rng(7)
    labels = np.zeros((40, 60, 60), np.uint16)
    labels[10:30, 20:40, 15:45] = 3
    labels[12:20, 25:30, 20:25] = 300
    ct = np.clip(rng.normal(40, 400, (96, 80)), -1024, 3071).astype(np.int16)
    # signed zeros, NaN, infinities, a subnormal (1e-40), the largest and the smallest normal float32
    specials = [0.0, -0.0, 1.5, -2.25, np.nan, np.inf, -np.inf, 1e-40, 3.4e38, 1.1754944e-38]
    floats = np.array(specials, np.float32)
    big = rng.integers(0, 65536, 300_000).astype(np.uint16)
    return {
        "uint8-3d": (rng.integers(0, 256, (5, 7, 3)).astype(np.uint8), 1),
        "uint16-3d": (rng.integers(0, 65536, (4, 5, 6)).astype(np.uint16), 1),
        "int16-extremes": (np.array([-32768, -1024, -1, 0, 1, 3071, 32767], np.int16), 1),
        "float32-specials": (floats, 1),
        "float32-0d": (np.array(2.5, np.float32), 1),
        "empty-label-map": (np.zeros((0, 0, 0), np.uint16), 1),
        "uint16-transposed-view": (np.arange(6 * 9, dtype=np.uint16).reshape(6, 9).T * 1001, 1),
        "uint16-big-endian-input": (np.arange(24, dtype=">u2").reshape(2, 3, 4) * 2731, 1),
        "label-patch": (labels, 1),
        "ct-slice-quantized": (ImageQuantizer.for_volume(ct[None]).quantize(ct), 1),
        "uint16-large-random": (big, 1),
        "uint16-large-random-level9": (big, 9),
    }


def _label_messages(shape=(9, 11, 13), steps=12) -> list[tuple[str, list, np.ndarray, str]]:
    """The kernel's label messages for a sequence of edits: ``(kind, bounds, state after, note)``, the patch
    being the changed box of the new state (as Annotator._after_change / _send_patch send them), with a full
    "labels" message first (empty) and again mid-way (a resync)."""
    rng = np.random.default_rng(11)
    state = np.zeros(shape, np.uint16)
    out = [("labels", [[0, 0]] * 3, state.copy(), "empty map")]

    def edit(new: np.ndarray, note: str) -> None:
        nonlocal state
        changed = nonzero_bounds(new != state)
        state = new
        if changed is not None:
            out.append(("patch", changed, state.copy(), note))

    new = state.copy()
    new[2:5, 3:8, 4:10] = 1
    edit(new, "first object")
    new = state.copy()
    new[4:8, 6:11, 8:13] = 2  # overlaps object 1 and reaches the y and x ends
    edit(new, "second object at the far corner")
    new = state.copy()
    new[new == 1] = 0
    edit(new, "object 1 deleted (a patch of mostly zeros)")
    new = state.copy()
    new[0, 0, 0] = 300
    new[8, 10, 12] = 65535
    edit(new, "labels above 255 at opposite corners")
    out.append(("labels", nonzero_bounds(state), state.copy(), "resync: the whole map"))
    for i in range(steps):
        new = state.copy()
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        new[box] = 0 if i % 4 == 3 else (rng.random([b - a for a, b in zip(lo, hi)]) < 0.6) * (i % 5 + 1)
        edit(new, f"random edit {i}")
    new = np.zeros(shape, np.uint16)
    edit(new, "everything erased")
    return out


def write_fixtures(directory: Path) -> Path:
    """Write manifest.json and the binary vectors into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    codec = []
    for name, (array, level) in _codec_cases().items():
        header, buf = encode(array, level=level)
        (directory / f"{name}.bin").write_bytes(buf)
        (directory / f"{name}.raw").write_bytes(_le_bytes(array))
        codec.append({"name": name, "header": header, "buffer": f"{name}.bin", "expected": f"{name}.raw",
                      "size": int(array.size)})
    shape = (9, 11, 13)
    messages = []
    for version, (kind, bounds, after, note) in enumerate(_label_messages(shape)):
        patch = after[tuple(slice(a, b) for a, b in bounds)]
        header, buf = encode(patch.astype(np.uint16))
        name = f"labels-{version}"
        (directory / f"{name}.bin").write_bytes(buf)
        (directory / f"{name}.raw").write_bytes(_le_bytes(after))
        messages.append({"kind": kind, "version": version, "bounds": [list(map(int, b)) for b in bounds],
                         "header": header, "buffer": f"{name}.bin", "expected": f"{name}.raw", "note": note})
    manifest = {"codec": codec, "labels": {"shape": list(shape), "messages": messages}, "palette": PALETTE}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return directory


def _run(cmd: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def _report(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The repository's node_modules with Biome in it (``npm ci`` from the lockfile if it is missing)."""
    if not (ROOT / "node_modules" / ".bin" / "biome").exists():
        proc = _run([NPM, "ci", "--no-audit", "--no-fund"], timeout=600)
        assert proc.returncode == 0, "npm ci failed\n" + _report(proc)
    return ROOT / "node_modules"


def test_fixtures_round_trip_in_python(tmp_path):
    """The vectors are what they claim to be (decoded by the Python side too)."""
    from nni_widget.widget._codec import decode

    m = json.loads((write_fixtures(tmp_path) / "manifest.json").read_text())
    for case in m["codec"]:
        a = decode(case["header"], (tmp_path / case["buffer"]).read_bytes())
        assert _le_bytes(a) == (tmp_path / case["expected"]).read_bytes(), case["name"]
    kinds = [msg["kind"] for msg in m["labels"]["messages"]]
    assert kinds[0] == "labels" and kinds.count("labels") == 2 and kinds.count("patch") >= 10


@needs_node
def test_biome_lint(node_modules):
    proc = _run([NPM, "run", "lint"])
    assert proc.returncode == 0, "npm run lint (biome check js) failed\n" + _report(proc)


@needs_node
def test_node_unit_tests(node_modules, tmp_path):
    fixtures = write_fixtures(tmp_path / "fixtures")
    proc = _run([NPM, "test"], env={"NNI_JS_FIXTURES": str(fixtures)})
    assert proc.returncode == 0, "npm test (node --test js/tests/) failed\n" + _report(proc)
    # the summary (TAP "# skipped N" or spec "ℹ skipped N"): with the vectors given, nothing may be skipped
    summary = dict(re.findall(r"^\S+ (tests|pass|fail|skipped) (\d+)\s*$", proc.stdout, re.M))
    assert summary.get("fail") == "0" and summary.get("skipped") == "0", _report(proc)
    assert int(summary.get("pass", 0)) >= 20, _report(proc)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/test_js.py DIR  (then: NNI_JS_FIXTURES=DIR npm test)")
    print(write_fixtures(Path(sys.argv[1])))
