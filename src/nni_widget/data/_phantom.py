"""Procedural 3D phantoms: a body with several labelled objects, CT- or MR-like intensities.

Objects are defined in millimetres, so a phantom with anisotropic ``spacing`` looks like the same
anatomy sampled on a coarser grid. Everything is numpy/scipy and vectorised; each object is evaluated
only on its own bounding box. A 64x96x96 phantom takes well under a second.

Objects (their ``kind`` in :class:`PhantomObject`): ``organ`` (a large smooth blob) holding a
``lesion``; a curved ``tube``; a ``touching`` pair of ellipsoids that share a boundary; a hollow
``shell`` around an unlabelled fluid core; smooth ``blob`` and ``ellipsoid`` objects. On request
(``horns=``), ``horn`` objects: thick tubes bent along an arc whose radius tapers from head to tail,
the shape of a caudate nucleus or a hippocampus, whose cross-section moves and shrinks from slice
to slice. On request (``twins=``), ``twin`` pairs: an elongated lens cut in two by a curved
surface whose halves differ in brightness by a small fraction of their contrast to the body (a
putamen beside its pallidum): a tight 2D box around one half also covers part of the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["PhantomObject", "make_phantom"]

# compartment ids below _FIRST_OBJECT are unlabelled tissue; object k has compartment _FIRST_OBJECT+k-1
_AIR, _BODY, _FLUID, _FIRST_OBJECT = 0, 1, 2, 3


@dataclass(frozen=True)
class PhantomObject:
    """One labelled object of a phantom.

    Attributes:
        label: its value in the instance map (1..N).
        kind: ``organ``, ``lesion``, ``tube``, ``touching``, ``shell``, ``blob``, ``ellipsoid``,
            ``horn`` or ``twin``.
        parent: label of the object that contains it (a lesion's organ), else 0.
        twin: for the second half of a ``twin`` pair, the label of the first (whose brightness it
            nearly shares), else 0.
    """

    label: int
    kind: str
    parent: int = 0
    twin: int = 0


class _Builder:
    """Places objects into a compartment map, each evaluated on its own bounding box."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float], rng):
        self.shape, self.spacing, self.rng = shape, np.asarray(spacing, float), rng
        self.extent = np.asarray(shape) * self.spacing  # mm
        self.comp = np.full(shape, _AIR, dtype=np.int16)
        self.objects: list[PhantomObject] = []

    # -- geometry helpers ------------------------------------------------------------------------
    def crop(self, center_mm: np.ndarray, radius_mm: float):
        """Slices of the box of ``radius_mm`` around ``center_mm`` and its voxel-centre coordinates (mm)."""
        lo = np.maximum(np.floor((center_mm - radius_mm) / self.spacing).astype(int), 0)
        hi = np.minimum(np.ceil((center_mm + radius_mm) / self.spacing).astype(int) + 1, self.shape)
        if (hi <= lo).any():
            return None, None
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        grids = np.ogrid[sl]
        coords = [(g + 0.5) * s - c for g, s, c in zip(grids, self.spacing, center_mm)]
        return sl, coords

    def smooth_noise(self, shape: Sequence[int], cell_vox: Sequence[float]) -> np.ndarray:
        """Zero-mean, unit-ish smooth noise of ``shape`` with features about ``cell_vox`` voxels wide."""
        low = [max(2, int(np.ceil(s / c)) + 2) for s, c in zip(shape, cell_vox)]
        field = ndimage.gaussian_filter(self.rng.standard_normal(low), 0.7, mode="wrap")
        field /= field.std() + 1e-8
        up = ndimage.zoom(field, [(s + 1) / (n - 1) for s, n in zip(shape, low)], order=1, mode="nearest")
        return up[tuple(slice(0, s) for s in shape)].astype(np.float32)

    def rotation(self) -> np.ndarray:
        q = self.rng.standard_normal(4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )

    def ellipsoid_field(self, coords, radii, rot, wobble: float = 0.0) -> np.ndarray:
        """Normalised radius (<= 1 inside) of a rotated ellipsoid, optionally perturbed by smooth noise."""
        z, y, x = coords
        r2 = 0.0
        for axis in range(3):
            u = rot[0, axis] * z + rot[1, axis] * y + rot[2, axis] * x
            r2 = r2 + (u / radii[axis]) ** 2
        r = np.sqrt(r2)
        if wobble:
            shp = np.broadcast_shapes(*(c.shape for c in coords))
            cell = [max(2.0, min(radii) / s * 0.8) for s in self.spacing]
            r = r + wobble * self.smooth_noise(shp, cell)
        return r

    # -- placement ---------------------------------------------------------------------------------
    def free_center(self, radius_mm: float, tries: int = 40) -> np.ndarray | None:
        """A random centre whose ``radius_mm`` ball lies in the body and on free tissue."""
        margin = np.minimum(radius_mm + self.spacing, self.extent / 2 - self.spacing)
        for _ in range(tries):
            c = self.rng.uniform(margin, self.extent - margin)
            sl, coords = self.crop(c, radius_mm)
            if sl is None:
                continue
            ball = sum(g**2 for g in coords) <= radius_mm**2
            if np.all(self.comp[sl][ball] == _BODY):
                return c
        return None

    def add(self, sl, inside, kind: str, parent: int = 0, overwrite=(_BODY,), largest=False, twin: int = 0) -> int:
        """Write ``inside`` (a mask on crop ``sl``) as a new object over the given compartments."""
        region = self.comp[sl]
        write = inside & np.isin(region, overwrite)
        if largest:  # keep one connected piece (a tube may leave and re-enter the body)
            cc, n = ndimage.label(write)
            if n > 1:
                write = cc == 1 + int(np.argmax(np.bincount(cc.ravel())[1:]))
        if write.sum() < 8:
            return 0
        label = len(self.objects) + 1
        region[write] = _FIRST_OBJECT + label - 1
        self.objects.append(PhantomObject(label, kind, parent, twin))
        return label


def _body(b: _Builder) -> None:
    """An elliptic-cylinder torso along z whose cross-section varies smoothly with z."""
    z, y, x = ((np.arange(n) + 0.5) * s for n, s in zip(b.shape, b.spacing))
    zc = (z - b.extent[0] / 2) / (b.extent[0] / 2)
    ay = b.extent[1] / 2 * b.rng.uniform(0.82, 0.95) * (1 - 0.06 * zc**2)
    ax = b.extent[2] / 2 * b.rng.uniform(0.85, 0.97) * (1 - 0.06 * zc**2)
    r = ((y[None, :, None] - b.extent[1] / 2) / ay[:, None, None]) ** 2 + (
        (x[None, None, :] - b.extent[2] / 2) / ax[:, None, None]
    ) ** 2
    b.comp[r <= 1.0] = _BODY


def _organ_with_lesion(b: _Builder) -> None:
    scale = min(b.extent[1:]) * b.rng.uniform(0.17, 0.24)
    radii = scale * b.rng.uniform(0.75, 1.25, 3)
    radii[0] = min(radii[0], b.extent[0] * 0.3)
    c = b.free_center(float(radii.max()))
    if c is None:
        return
    sl, coords = b.crop(c, float(radii.max()) * 1.3)
    organ = b.add(sl, b.ellipsoid_field(coords, radii, b.rotation(), wobble=0.12) <= 1.0, "organ")
    if not organ:
        return
    inside = b.comp[sl] == _FIRST_OBJECT + organ - 1
    depth = ndimage.distance_transform_edt(inside, sampling=b.spacing)
    r_les = float(np.clip(depth.max() * b.rng.uniform(0.35, 0.6), 2.5 * b.spacing.max(), 12.0))
    cand = np.argwhere(depth >= r_les + b.spacing.max())
    if len(cand) == 0:
        return
    vox = cand[b.rng.integers(len(cand))] + [s.start for s in sl]
    lc = (vox + 0.5) * b.spacing
    lsl, lcoords = b.crop(lc, r_les * 1.3)
    lradii = r_les * b.rng.uniform(0.8, 1.0, 3)
    blob = b.ellipsoid_field(lcoords, lradii, b.rotation(), wobble=0.1) <= 1.0
    b.add(lsl, blob, "lesion", parent=organ, overwrite=(_FIRST_OBJECT + organ - 1,))


def _tube(b: _Builder) -> None:
    """A vessel-like tube along a smooth random curve, drawn as a distance threshold to its centreline."""
    t = np.linspace(0.0, 1.0, 400)[:, None]
    main = int(b.rng.integers(3))
    start = b.rng.uniform(0.25, 0.75, 3) * b.extent
    direction = b.rng.standard_normal(3)
    direction[main] += 3.0 * np.sign(direction[main] or 1.0)
    direction /= np.linalg.norm(direction)
    length = b.extent[main] * b.rng.uniform(0.6, 1.0)
    perp = np.cross(direction, b.rng.standard_normal(3))
    perp /= np.linalg.norm(perp) + 1e-8
    wave = (
        b.rng.uniform(0.05, 0.15)
        * length
        * np.sin(2 * np.pi * b.rng.uniform(0.5, 1.5) * t + b.rng.uniform(0, 6.3))
    )
    pts = start + (t - 0.5) * length * direction + wave * perp
    idx = np.floor(pts / b.spacing).astype(int)
    idx = idx[np.all((idx >= 0) & (idx < b.shape), axis=1)]
    if len(idx) == 0:
        return
    line = np.ones(b.shape, dtype=bool)
    line[tuple(idx.T)] = False
    lo, hi = idx.min(0), idx.max(0) + 1
    radius = b.rng.uniform(1.6, 3.2) * float(b.spacing.min()) + 0.5
    pad = np.ceil(radius / b.spacing).astype(int) + 1
    sl = tuple(slice(max(0, a - p), min(n, z + p)) for a, z, p, n in zip(lo, hi, pad, b.shape))
    dist = ndimage.distance_transform_edt(line[sl], sampling=b.spacing)
    b.add(sl, dist <= radius, "tube", largest=True)


def _horn(b: _Builder, tries: int = 6) -> None:
    """A thick tube bent along an arc, its radius tapering from head to tail (caudate-like).

    Of ``tries`` random placements, the first whose tube lies at least 85% on free tissue is kept
    (else the freest); it is written over free tissue only, as one connected piece."""
    s = np.linspace(0.0, 1.0, 300)
    head = min(b.extent[1:]) * b.rng.uniform(0.06, 0.11)
    tail = b.rng.uniform(1.2, 2.5) * float(b.spacing.min())
    radius = tail + (head - tail) * (1.0 - s) ** b.rng.uniform(0.7, 1.5)
    best = None
    for _ in range(tries):
        main = int(b.rng.integers(3))
        d = b.rng.standard_normal(3)
        d[main] += 3.0 * np.sign(d[main] or 1.0)
        d /= np.linalg.norm(d)
        p = np.cross(d, b.rng.standard_normal(3))
        p /= np.linalg.norm(p) + 1e-8
        length = b.extent[main] * b.rng.uniform(0.5, 0.85)
        bend = b.rng.uniform(np.pi / 3, 1.1 * np.pi)
        phi = bend * (s - 0.5)
        arc = length / bend  # radius of curvature
        pts = arc * np.sin(phi)[:, None] * d + arc * (1.0 - np.cos(phi))[:, None] * p
        pts += b.rng.uniform(0.3, 0.7, 3) * b.extent - pts.mean(0)
        lo = np.maximum(np.floor((pts.min(0) - head) / b.spacing).astype(int), 0)
        hi = np.minimum(np.ceil((pts.max(0) + head) / b.spacing).astype(int) + 1, b.shape)
        if (hi - lo < 2).any():
            continue
        sl = tuple(slice(int(a), int(z)) for a, z in zip(lo, hi))
        grid = np.stack(np.meshgrid(*[(np.arange(a, z) + 0.5) * sp for a, z, sp in zip(lo, hi, b.spacing)],
                                    indexing="ij"), axis=-1)  # fmt: skip
        dist, nearest = cKDTree(pts).query(grid.reshape(-1, 3))
        inside = (dist <= radius[nearest]).reshape(grid.shape[:3])
        if not inside.any():
            continue
        free = float(np.mean(b.comp[sl][inside] == _BODY))
        if best is None or free > best[0]:
            best = (free, sl, inside)
        if free >= 0.85:
            break
    if best is not None:
        b.add(best[1], best[2], "horn", largest=True)


def _twin_pair(b: _Builder) -> None:
    """An elongated lens (random orientation) cut in two by a gently curved surface, one object per half.

    The cut passes within 0.35 of the lens's middle radius from its centre, so either half may be the
    larger; each half is written over free tissue only, as one connected piece. Their brightness is
    tied in :func:`_intensities` (the second's ``twin`` names the first)."""
    r = min(b.extent[1:]) * b.rng.uniform(0.08, 0.12)
    radii = r * np.sort(b.rng.uniform([0.55, 0.9, 1.3], [0.85, 1.2, 1.9]))
    c = None
    for shrink in (1.0, 0.8, 0.6):
        c = b.free_center(float(radii.max() * shrink) + 1.0)
        if c is not None:
            radii = radii * shrink
            break
    if c is None:
        return
    rot = b.rotation()
    sl, coords = b.crop(c, float(radii.max()) * 1.1)
    lens = b.ellipsoid_field(coords, radii, rot, wobble=0.08) <= 1.0
    # the cut: a plane across the lens (normal mostly along its middle or shortest axis) bent by a
    # quadratic term, at an offset from the centre
    normal = rot @ np.array([b.rng.uniform(0.4, 1.0), b.rng.uniform(0.4, 1.0), b.rng.uniform(-0.3, 0.3)])
    normal /= np.linalg.norm(normal)
    along = sum(g * n for g, n in zip(coords, normal))
    across2 = sum(g**2 for g in coords) - along**2
    bend = b.rng.uniform(-1.0, 1.0) / float(radii.max())
    side = along + 0.5 * bend * across2 > b.rng.uniform(-0.35, 0.35) * float(radii[1])
    first = b.add(sl, lens & side, "twin", largest=True)
    if first:
        b.add(sl, lens & ~side, "twin", largest=True, twin=first)


def _touching_pair(b: _Builder) -> None:
    r1, r2 = (min(b.extent[1:]) * b.rng.uniform(0.07, 0.11) for _ in range(2))
    c = b.free_center(r1 + r2 + 2.0)
    if c is None:
        return
    u = b.rng.standard_normal(3)
    u /= np.linalg.norm(u)
    c1, c2 = c - u * r2 * 0.95, c + u * r1 * 0.95  # centres r1 + r2 - overlap apart
    sl, coords = b.crop(c, r1 + r2 + 2.0)
    f1 = b.ellipsoid_field([g - (a - c[i]) for i, (g, a) in enumerate(zip(coords, c1))], [r1] * 3, np.eye(3))
    f2 = b.ellipsoid_field([g - (a - c[i]) for i, (g, a) in enumerate(zip(coords, c2))], [r2] * 3, np.eye(3))
    first = b.add(sl, (f1 <= 1.0) & (f1 <= f2), "touching")
    if first:
        b.add(sl, (f2 <= 1.0) & (f2 < f1), "touching")


def _shell(b: _Builder) -> None:
    r_out = min(b.extent[1:]) * b.rng.uniform(0.08, 0.12)
    c = b.free_center(r_out + 1.0)
    if c is None:
        return
    sl, coords = b.crop(c, r_out * 1.25)
    radii = r_out * b.rng.uniform(0.85, 1.1, 3)
    f = b.ellipsoid_field(coords, radii, b.rotation(), wobble=0.04)
    thickness = max(2.2 * float(b.spacing.max()), 0.25 * r_out) / r_out
    if b.add(sl, (f <= 1.0) & (f > 1.0 - thickness), "shell"):
        core = b.comp[sl]
        core[(f <= 1.0 - thickness) & (core == _BODY)] = _FLUID


def _simple(b: _Builder, kind: str) -> None:
    r = min(b.extent[1:]) * b.rng.uniform(0.05, 0.1)
    radii = r * b.rng.uniform(0.6, 1.4, 3)
    c = b.free_center(float(radii.max()) + 1.0)
    if c is None:
        return
    sl, coords = b.crop(c, float(radii.max()) * 1.3)
    f = b.ellipsoid_field(coords, radii, b.rotation(), wobble=0.2 if kind == "blob" else 0.0)
    b.add(sl, f <= 1.0, kind)


def _intensities(b: _Builder, modality: str, contrast: float = 1.0) -> np.ndarray:
    """Compartment map -> image: per-compartment means, textures, bias field, blur and noise.

    ``contrast`` scales each object's mean difference from what surrounds it (its organ or the
    body) after it is drawn, so the random stream and everything else stay the same."""
    rng, n = b.rng, _FIRST_OBJECT + len(b.objects)
    ct = modality == "ct"
    air, body = (-1000.0, rng.uniform(20, 60)) if ct else (0.0, rng.uniform(250, 400))
    span, min_contrast = (260.0, 35.0) if ct else (600.0, 70.0)
    base = np.zeros(n)
    base[_AIR], base[_BODY] = air, body
    base[_FLUID] = body + (rng.uniform(-40, -20) if ct else rng.uniform(200, 350))
    for obj in b.objects:
        ref = base[_FIRST_OBJECT + obj.parent - 1] if obj.parent else body
        if obj.twin:  # a small step from its twin's brightness, before the contrast factor
            first = (base[_FIRST_OBJECT + obj.twin - 1] - ref) / contrast + ref
            step = rng.uniform(0.08, 0.3) * max(abs(first - ref), min_contrast) * rng.choice([-1.0, 1.0])
            if not ct and first + step <= 40:
                step = abs(step)
            base[_FIRST_OBJECT + obj.label - 1] = ref + contrast * (first + step - ref)
            continue
        for _ in range(20):
            v = ref + rng.uniform(-span, span) * (0.5 if obj.parent else 1.0)
            if abs(v - ref) >= min_contrast and (ct or v > 40):
                break
        if obj.kind == "shell" and ct:
            v = body + rng.uniform(250, 700)  # bone-like rim
        base[_FIRST_OBJECT + obj.label - 1] = ref + contrast * (v - ref)
    amp = np.abs(base - body) * rng.uniform(0.05, 0.2, n) + (8.0 if ct else 15.0)
    amp[_AIR] = 0.0
    comp = b.comp.astype(np.intp)
    fine = b.smooth_noise(b.shape, [3.0] * 3)
    coarse = b.smooth_noise(b.shape, [12.0] * 3)
    img = base[comp] + amp[comp] * (0.6 * fine + 0.8 * coarse)
    bias = b.smooth_noise(b.shape, [s / 2.0 for s in b.shape])
    if ct:
        img += 10.0 * bias * (comp != _AIR)
    else:
        img *= np.exp(rng.uniform(0.1, 0.3) * bias)
    img = ndimage.gaussian_filter(img, rng.uniform(0.5, 1.0) / (b.spacing / b.spacing.min()))
    sigma = rng.uniform(6, 20) if ct else rng.uniform(10, 30)
    if ct:
        img += sigma * rng.standard_normal(b.shape)
    else:  # Rician magnitude noise
        img = np.hypot(img + sigma * rng.standard_normal(b.shape), sigma * rng.standard_normal(b.shape))
    return img.astype(np.float32)


def make_phantom(
    shape: Sequence[int] = (64, 96, 96),
    seed: int = 0,
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    *,
    modality: str | None = None,
    return_info: bool = False,
    contrast: float = 1.0,
    horns: int = 0,
    twins: int = 0,
):
    """A random body phantom with labelled objects.

    Args:
        shape: ``(Z, Y, X)`` voxels.
        seed: seed of the generator; the same arguments always give the same phantom.
        spacing: voxel size ``(dz, dy, dx)`` in mm; objects are sized in mm.
        modality: ``"ct"`` (air -1000, Hounsfield-like) or ``"mr"`` (arbitrary positive units,
            multiplicative bias field, Rician noise); ``None`` picks one from the seed.
        return_info: also return the list of :class:`PhantomObject` (kind and parent per label).
        contrast: factor on every object's mean intensity difference from its surroundings (its
            organ, or the body). 1 (default): at least 70 MR units / 35 HU, several noise standard
            deviations. Real structures can be far fainter: the deep grey nuclei of a T1 brain differ
            from the tissue around them by a fraction of a noise standard deviation; values of
            0.05-0.3 make such objects.
        horns: how many ``horn`` objects to add (tubes bent along an arc that taper from a thick
            head to a thin tail). 0 (default) leaves the phantom of every other argument unchanged.
        twins: how many ``twin`` pairs to add after the horns (an elongated lens cut in two by a
            curved surface, halves of nearly the same brightness). 0 (default) leaves the phantom of
            every other argument unchanged.

    Returns:
        ``(image, labels)`` or ``(image, labels, objects)``: image float32 ``(Z, Y, X)``; labels int32
        ``(Z, Y, X)`` instance map, 0 background, objects 1..N, each non-empty; a lesion's label is
        surrounded by its organ's.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be 3 edges of at least 16 voxels (z, y, x), got {shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers (dz, dy, dx) in mm, got {spacing}")
    if int(horns) != horns or horns < 0:
        raise ValueError(f"horns must be a whole number of horn objects >= 0, got {horns!r}")
    if int(twins) != twins or twins < 0:
        raise ValueError(f"twins must be a whole number of twin pairs >= 0, got {twins!r}")
    rng = np.random.default_rng(seed)
    if modality is None:
        modality = "ct" if rng.random() < 0.5 else "mr"
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct', 'mr' or None, got {modality!r}")
    b = _Builder(shape, spacing, rng)
    _body(b)
    _tube(b)
    _organ_with_lesion(b)
    _touching_pair(b)
    _shell(b)
    for kind in rng.permutation(["blob", "blob", "ellipsoid", "ellipsoid"]):
        _simple(b, str(kind))
    for _ in range(int(horns)):
        _horn(b)
    for _ in range(int(twins)):
        _twin_pair(b)
    if not contrast > 0:
        raise ValueError(f"contrast must be a positive factor (1 = the default contrasts), got {contrast}")
    image = _intensities(b, modality, float(contrast))
    labels = np.where(b.comp >= _FIRST_OBJECT, b.comp - (_FIRST_OBJECT - 1), 0).astype(np.int32)
    # objects only overwrite free tissue (a lesion: its organ, never all of it), so every label is
    # present; the remap only guards that promise
    present = np.bincount(labels.ravel(), minlength=len(b.objects) + 1)[1:] > 0
    objects = b.objects
    if not present.all():  # pragma: no cover - defensive
        remap = np.zeros(len(objects) + 1, dtype=np.int32)
        kept = [o for o, p in zip(objects, present) if p]
        remap[[o.label for o in kept]] = np.arange(1, len(kept) + 1)
        labels = remap[labels]
        objects = [PhantomObject(int(remap[o.label]), o.kind, int(remap[o.parent]), int(remap[o.twin])) for o in kept]
    return (image, labels, list(objects)) if return_info else (image, labels)
