"""Figures of a benchmark: Dice-per-interaction curves and qualitative overlays (matplotlib).

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state, no backend
switch), so the library works the same in a notebook, a script and a headless CI job.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["mean_curves", "curves_figure", "qualitative_figure", "write_plots"]


def mean_curves(rows: Sequence[dict[str, Any]], key: tuple[str, str] = ("method", "prompt")) -> dict[tuple, np.ndarray]:
    """Mean Dice per interaction over cases, per ``(row[key[0]], row[key[1]])``; unsupported runs left out.

    Curves of one group have equal length (a perfect mask repeats its last value in the runner); a
    method without corrections gives a one-value curve.
    """
    groups: dict[tuple, list[list[float]]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "unsupported" or not r.get("dice_curve"):
            continue
        groups[(r[key[0]], r[key[1]])].append(list(r["dice_curve"]))
    out = {}
    for k, curves in groups.items():
        n = min(len(c) for c in curves)
        out[k] = np.mean([c[:n] for c in curves], axis=0)
    return out


def curves_figure(rows: Sequence[dict[str, Any]], by: str = "prompt", title: str | None = None):
    """One panel per prompt kind (``by="prompt"``, a line per method) or per method (``by="method"``).

    Returns:
        a :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if by not in ("prompt", "method"):
        raise ValueError(f"by must be 'prompt' or 'method', got {by!r}")
    other = "method" if by == "prompt" else "prompt"
    curves = mean_curves(rows, (by, other))
    panels = list(dict.fromkeys(r[by] for r in rows))
    lines = list(dict.fromkeys(r[other] for r in rows))
    fig = Figure(figsize=(3.6 * max(1, len(panels)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), sharey=True, squeeze=False)[0]
    colours = {name: f"C{i}" for i, name in enumerate(lines)}
    for ax, panel in zip(axes, panels):
        for name in lines:
            c = curves.get((panel, name))
            if c is None:
                continue
            x = np.arange(1, len(c) + 1)
            label = name if len(c) > 1 else f"{name} (no corrections)"
            ax.plot(x, c, marker="o", ms=3.5 if len(c) > 1 else 7, color=colours[name], label=label)
        ax.set_title(f"{by}: {panel}", fontsize=10)
        ax.set_xlabel("interaction")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean Dice")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    n_cases = len({r["case"] for r in rows})
    fig.suptitle(title or f"Dice per interaction, by {by} ({n_cases} cases)", fontsize=11)
    return fig


def qualitative_figure(image: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray], z: int | None = None,
                       title: str | None = None):
    """Axial slice ``z`` (default: the one with the most ground truth) with each method's mask outlined.

    Args:
        image: ``(z, y, x)`` image.
        gt: ground truth, same shape (drawn in white in every panel).
        masks: ``{label: (z, y, x) bool mask}``, one panel each.
    """
    from matplotlib.figure import Figure

    from nni_widget.evaluate._metrics import dice

    if z is None:
        z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    n = max(1, len(masks))
    fig = Figure(figsize=(2.8 * n, 3.0), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    lo, hi = np.percentile(image[z], (0.5, 99.5))
    for ax, (label, m) in zip(axes, masks.items()):
        ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi)
        ax.contour(gt[z].astype(float), levels=[0.5], colors="white", linewidths=1.0)
        if m[z].any():
            ax.contour(m[z].astype(float), levels=[0.5], colors="orange", linewidths=1.0)
        ax.set_title(f"{label}\nDice {dice(m, gt):.2f} (3D)", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(title or f"slice z={z}: ground truth white, method orange", fontsize=9)
    return fig


def write_plots(rows: Sequence[dict[str, Any]], out: str | Path, dpi: int = 110) -> dict[str, Path]:
    """Write ``dice_by_prompt.png`` and ``dice_by_method.png`` (and one pair per dataset when several)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    datasets = sorted({r["dataset"] for r in rows})
    groups: list[tuple[str, Sequence[dict[str, Any]]]] = [("", rows)]
    if len(datasets) > 1:
        groups += [(d, [r for r in rows if r["dataset"] == d]) for d in datasets]
    for dataset, rs in groups:
        for by in ("prompt", "method"):
            stem = f"dice_by_{by}" + (f"_{dataset}" if dataset else "")
            title = None if not dataset else f"{dataset}: Dice per interaction, by {by} ({len({r['case'] for r in rs})} cases)"
            fig = curves_figure(rs, by=by, title=title)
            path = out / f"{stem}.png"
            fig.savefig(path, dpi=dpi)
            paths[stem] = path
    return paths
