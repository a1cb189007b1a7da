"""Smoke runs of the benchmark scripts that measure the bundled model's figures.

Their figures go into the docs; these runs keep the scripts working (arguments, imports, the
table they print) and check what a correct run must show, on one phantom so they take seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _table(script: str, *args: str) -> list[list[str]]:
    """Run ``benchmarks/script`` and return the ``|``-separated rows it prints (header first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [[c.strip() for c in line.split("|")] for line in done.stdout.splitlines() if line.count("|") >= 3]
    assert rows, done.stdout
    return rows


@pytest.mark.slow
def test_bench_through_plane_profile():
    """Recall per slice distance: one row per method, the prompted slice itself nearly all found."""
    header, *rows = _table("bench_through_plane.py", "--contrasts", "1", "--phantoms", "1")
    assert header[0] == "objects" and header[-2] == "overall"
    assert [r[1] for r in rows] == ["bundled", "random walker"]
    for r in rows:
        values = [float(v) for v in r[2:-1]]
        assert len(values) == len(header) - 3 and all(0 <= v <= 1 for v in values), r
        assert values[0] > 0.8, r  # the lasso's own slice
        assert values[-1] <= max(values[:-1]), r  # overall is a mean over the bins


@pytest.mark.slow
def test_bench_through_plane_every_axis():
    """--axes 0,1,2 prompts each object along all three axes: three times the cases of the axial run."""
    (_, axial), (_, every) = (
        _table("bench_through_plane.py", "--contrasts", "1", "--phantoms", "1", "--no-reference", "--axes", a)
        for a in ("0", "0,1,2")
    )
    n = lambda row: int(row[0].rsplit("(", 1)[1].rstrip(")"))  # noqa: E731  "phantoms, ... (N)"
    assert "axes 0,1,2" in every[0] and "axes" not in axial[0]
    assert n(every) == 3 * n(axial) > 0
    assert float(every[2]) > 0.8  # each prompt's own slice


@pytest.mark.slow
def test_bench_through_plane_horns():
    """--horns 2: the phantoms' other objects keep their row (the same count as without horns), and
    the horn objects get a row of their own, two per phantom."""
    (_, plain), (_, with_horns, horns) = (
        _table("bench_through_plane.py", "--contrasts", "1", "--phantoms", "1", "--no-reference", "--horns", h)
        for h in ("0", "2")
    )
    n = lambda row: int(row[0].rsplit("(", 1)[1].rstrip(")"))  # noqa: E731  "phantoms, ... (N)"
    assert n(with_horns) == n(plain) and horns[0].startswith("horn objects") and n(horns) == 2
    assert float(horns[2]) > 0.8  # each prompt's own slice
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_through_plane.py"), "--horns", "-1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--horns -1" in done.stderr


def test_bench_through_plane_rejects_bad_axes():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_through_plane.py"), "--axes", "0,3"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--axes '0,3'" in done.stderr and "0, 1, 2" in done.stderr


@pytest.mark.slow
def test_bench_faint_recall_rows():
    """Dice, precision and recall of one lasso per object, for the model and the random walker."""
    header, *rows = _table("bench_faint_recall.py", "--contrasts", "1", "--phantoms", "1", "--kinds", "lasso")
    assert header[:4] == ["contrast", "kind", "method", "objects"]
    assert [r[2] for r in rows] == ["bundled", "random walker"]
    for r in rows:
        dice, precision, recall = (float(v) for v in r[4:7])
        assert all(0 <= v <= 1 for v in (dice, precision, recall)), r
        assert int(r[3]) > 0
    assert float(rows[0][4]) > 0.5  # a lasso on a clear phantom object
    assert float(rows[1][7]) == 1.0  # the reference's recall ratio to itself
