"""Evaluation cases and named suites.

A case is one object in one image, cropped around the object with a margin (so classical methods
stay fast; every method sees the same crop). Real cases come from registry packages through
:func:`nni_widget.data.load_real` and are skipped, with a logged reason, when they cannot be fetched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["Case", "crop_case", "phantom_cases", "real_cases", "SUITES", "load_suite"]

logger = logging.getLogger(__name__)

#: structures of the quick suite (AAL labels of the Colin27 atlas)
QUICK_STRUCTURES = ("Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Caudate_R", "Putamen_L", "Thalamus_R")


@dataclass(eq=False)
class Case:
    """One object to segment.

    Attributes:
        name: unique case name, e.g. ``"colin27_aal/Hippocampus_L"``.
        dataset: dataset name (tables are grouped by it).
        structure: structure or object kind.
        image: ``(z, y, x)`` float32 crop.
        gt: ``(z, y, x)`` bool ground truth of the object, same shape.
        spacing: voxel size ``(dz, dy, dx)`` in mm.
        meta: provenance (source, label value, crop offset in the full volume).
    """

    name: str
    dataset: str
    structure: str
    image: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, float, float]
    meta: dict = field(default_factory=dict)


def crop_case(
    name: str, dataset: str, structure: str, image: np.ndarray, gt: np.ndarray, spacing: Sequence[float],
    margin_mm: float = 20.0, meta: dict | None = None,
) -> Case:
    """A :class:`Case` cropped to the object's bounding box plus ``margin_mm`` on every side."""
    gt = np.asarray(gt).astype(bool)
    if not gt.any():
        raise ValueError(f"case {name}: the object is empty")
    idx = np.argwhere(gt)
    pad = [int(np.ceil(margin_mm / s)) for s in spacing]
    lo = [max(0, int(a) - p) for a, p in zip(idx.min(0), pad)]
    hi = [min(n, int(b) + 1 + p) for b, p, n in zip(idx.max(0), pad, gt.shape)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    meta = dict(meta or {}, crop_offset=lo, full_shape=list(gt.shape))
    return Case(name, dataset, structure, np.ascontiguousarray(image[sl], dtype=np.float32),
                np.ascontiguousarray(gt[sl]), tuple(float(s) for s in spacing), meta)  # type: ignore[arg-type]


def phantom_cases(
    seeds: Sequence[int] = (0, 1), kinds: Sequence[str] = ("organ", "blob"), shape: Sequence[int] = (64, 96, 96),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
) -> list[Case]:
    """Synthetic cases: for each seed, the first object of each kind in ``make_phantom(shape, seed)``."""
    from nni_widget.data import make_phantom

    cases = []
    for seed in seeds:
        image, labels, objects = make_phantom(shape, seed, spacing, return_info=True)
        for kind in kinds:
            obj = next((o for o in objects if o.kind == kind), None)
            if obj is None:
                logger.warning("phantom seed %d has no %s object; skipped", seed, kind)
                continue
            cases.append(crop_case(f"phantom/seed{seed}/{kind}", "phantom", kind, image, labels == obj.label,
                                   spacing, meta={"source": "make_phantom", "seed": seed, "label": obj.label}))
    return cases


def real_cases(source: str = "colin27_aal", structures: Sequence[str] = QUICK_STRUCTURES) -> list[Case]:
    """Real cases from ``load_real(source)``; an empty list (with a warning) when it cannot be fetched."""
    from nni_widget.data import DataFetchError, load_real

    try:
        volume, labels, names = load_real(source)
    except DataFetchError as e:
        logger.warning("real data %r skipped: cannot fetch it (%s)", source, e)
        return []
    by_name = {v: k for k, v in names.items()}
    cases = []
    for s in structures:
        if s not in by_name:
            logger.warning("%s has no structure %r; skipped", source, s)
            continue
        cases.append(crop_case(f"{source}/{s}", source, s, volume.array, labels == by_name[s], volume.spacing,
                               meta={"source": source, "label": int(by_name[s])}))
    return cases


#: CT structures of the quick suite: pyradiomics' two labelled lung findings (evaluation only)
QUICK_CT = {"lung1_ct": ("lung_lesion",), "lung2_ct": ("lung_lesion",)}


def _quick() -> list[Case]:
    return phantom_cases() + real_cases() + [c for s, names in QUICK_CT.items() for c in real_cases(s, names)]


def _held_out() -> list[Case]:
    from nni_widget.data import HELD_OUT

    return [c for source, names in HELD_OUT.items() for c in real_cases(source, names)]


def _tiny() -> list[Case]:
    return phantom_cases(seeds=(0,), kinds=("blob",), shape=(32, 48, 48))


#: named suites: a function returning the cases
SUITES: dict[str, Callable[[], list[Case]]] = {"quick": _quick, "held_out": _held_out, "tiny": _tiny}


def load_suite(name: str) -> list[Case]:
    """The cases of a named suite (see :data:`SUITES`)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {sorted(SUITES)}")
    return SUITES[name]()
