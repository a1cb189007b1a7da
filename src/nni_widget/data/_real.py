"""Real volumes prepared for training: the held-out split, instances, merges and pseudo-labels.

- **Split.** :data:`HELD_OUT` names the structures reserved for validation (deep grey nuclei,
  hippocampus, amygdala, ventricles). They are removed from every training label map and no
  pseudo-label may touch them (:func:`prepare_real`), so they are never a training target.
- **Instances.** Semantic labels become instances: the connected components of each label
  (:func:`instances_from_semantic`).
- **Merges.** Related instances (same structure family, touching bounding boxes, see
  :func:`related_instances`) may be merged into one target, which teaches ambiguity (DESIGN §4).
- **Pseudo-labels.** Unsupervised 3D over-segmentation adds open-set objects that carry no
  anatomical name: SLIC supervoxels (:func:`pseudo_labels`) or intensity regions cut at their
  narrow necks (:func:`region_pseudo_labels`), whose outer boundaries are image edges.

Arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "HELD_OUT",
    "PSEUDO_METHODS",
    "SHARED_SPACE_SOURCES",
    "RealVolume",
    "held_out_from_shared_space",
    "held_out_labels",
    "instances_from_semantic",
    "prepare_real",
    "pseudo_labels",
    "real_manifest",
    "region_pseudo_labels",
    "related_instances",
    "resample_to_spacing",
]

logger = logging.getLogger(__name__)

#: sources on one template space (MNI): the held-out structures of each are kept out of the
#: pseudo-labels of the others, through world coordinates (e.g. MNI152's putamen, unlabelled there,
#: must not become a pseudo-label while Colin27's putamen is a held-out structure)
SHARED_SPACE_SOURCES = ("colin27_aal", "mni152_tissue")
#: margin (voxels) around a structure held out in another source of the same space
SHARED_SPACE_MARGIN = 5

#: ways :func:`prepare_real` makes pseudo-labels
PSEUDO_METHODS = ("slic", "regions")

#: structures of each source reserved for validation: never a training target
HELD_OUT: dict[str, tuple[str, ...]] = {
    "colin27_aal": (
        "Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R",
        "Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R",
        "Pallidum_L", "Pallidum_R", "Thalamus_L", "Thalamus_R",
    ),
    "mni152_tissue": ("ventricles",),
    # evaluation-only CT: the one labelled structure is held out, so no training target is left
    "lung1_ct": ("lung_lesion",),
    "lung2_ct": ("lung_lesion",),
}  # fmt: skip


def held_out_labels(source: str, names: Mapping[int, str]) -> set[int]:
    """Label values of ``source`` that belong to the held-out split.

    Raises:
        KeyError: a held-out structure name is missing from ``names`` (the split would silently
            leak otherwise).
    """
    wanted = set(HELD_OUT.get(source, ()))
    found = {v for v, n in names.items() if n in wanted}
    missing = wanted - {names[v] for v in found}
    if missing:
        raise KeyError(f"{source}: held-out structures {sorted(missing)} are not among its labels")
    return found


def instances_from_semantic(
    semantic: np.ndarray, exclude: Iterable[int] = (), min_voxels: int = 50, max_voxels: int | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Connected components (26-connectivity) of every semantic label, as an instance map.

    Args:
        semantic: ``(z, y, x)`` integer label map, 0 background.
        exclude: label values left out (they become background).
        min_voxels: smaller components are dropped.
        max_voxels: larger components are dropped too (None: no limit).

    Returns:
        ``(instances, semantic_of)``: int32 instance map (1..N) and instance -> semantic value.
    """
    semantic = np.asarray(semantic)
    out = np.zeros(semantic.shape, np.int32)
    semantic_of: dict[int, int] = {}
    skip = set(int(v) for v in exclude)
    objs = ndimage.find_objects(semantic.astype(np.int64, copy=False))
    structure = np.ones((3, 3, 3), bool)
    for value, sl in enumerate(objs, start=1):
        if sl is None or value in skip:
            continue
        cc, n = ndimage.label(semantic[sl] == value, structure)
        if n == 0:
            continue
        sizes = np.bincount(cc.ravel())
        for k in range(1, n + 1):
            if sizes[k] < min_voxels or (max_voxels is not None and sizes[k] > max_voxels):
                continue
            new = len(semantic_of) + 1
            out[sl][cc == k] = new
            semantic_of[new] = value
    return out, semantic_of


def _family(name: str) -> str:
    """Structure family of a name: ``Frontal_Sup_Orb_L`` -> ``Frontal``; ``grey_matter`` -> ``tissue``."""
    if name in ("grey_matter", "white_matter"):
        return "tissue"
    return name.split("_")[0]


def related_instances(
    instances: np.ndarray, semantic_of: Mapping[int, int], names: Mapping[int, str], gap: int = 2
) -> dict[int, tuple[int, ...]]:
    """Instances that may be merged with each one: same family, bounding boxes within ``gap`` voxels."""
    boxes = ndimage.find_objects(instances)
    out: dict[int, tuple[int, ...]] = {}
    for a, sa in semantic_of.items():
        ba = boxes[a - 1]
        partners = []
        for b, sb in semantic_of.items():
            if b == a or _family(names.get(sa, "")) != _family(names.get(sb, "")):
                continue
            bb = boxes[b - 1]
            if all(x.start <= y.stop + gap and y.start <= x.stop + gap for x, y in zip(ba, bb)):
                partners.append(b)
        out[a] = tuple(partners)
    return out


def pseudo_labels(
    image: np.ndarray,
    foreground: np.ndarray,
    forbidden: np.ndarray | None = None,
    *,
    n_segments: int = 800,
    compactness: float = 0.1,
    downsample: int = 2,
    min_voxels: int = 200,
    elongation: float = 1.0,
) -> np.ndarray:
    """Open-set objects from an unsupervised over-segmentation (SLIC supervoxels).

    SLIC runs on the image downsampled by ``downsample`` (cost) and is brought back by repetition.
    Supervoxels that touch ``forbidden`` voxels (the held-out structures) or are smaller than
    ``min_voxels`` are dropped. ``elongation`` > 1 shrinks SLIC's distances along the first axis by
    that factor, so that the supervoxels (of about the same volume) reach that much further along it
    and less far across (on the 1 mm heads, 3 gives a median extent of 48 x 20 x 19 voxels against
    26 x 24 x 24).

    Args:
        image: ``(z, y, x)`` float image.
        foreground: where supervoxels may lie (e.g. the head).
        forbidden: voxels no pseudo-label may contain.

    Returns:
        int32 map of supervoxels (1..N, relabelled consecutively), 0 elsewhere.
    """
    from skimage.segmentation import slic

    if not elongation >= 1:
        raise ValueError(f"elongation {elongation} must be >= 1 (1: round supervoxels)")
    d = max(1, int(downsample))
    small = np.asarray(image, np.float32)[::d, ::d, ::d]
    mask = np.asarray(foreground, bool)[::d, ::d, ::d]
    if not mask.any():
        return np.zeros(image.shape, np.int32)
    lo, hi = np.percentile(small[mask], (1, 99))
    norm = np.clip((small - lo) / max(hi - lo, 1e-6), 0, 1)
    stretch = {} if elongation == 1 else {"spacing": np.array([1.0 / elongation, 1.0, 1.0])}
    seg = slic(norm, n_segments=n_segments, compactness=compactness, channel_axis=None, mask=mask,
               start_label=1, **stretch)  # fmt: skip
    if d > 1:
        seg = np.repeat(np.repeat(np.repeat(seg, d, 0), d, 1), d, 2)
        seg = seg[: image.shape[0], : image.shape[1], : image.shape[2]]
        pad = [(0, n - s) for n, s in zip(image.shape, seg.shape)]
        seg = np.pad(seg, pad, mode="edge")
    seg = np.where(np.asarray(foreground, bool), seg, 0)
    sizes = np.bincount(seg.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    if forbidden is not None:
        keep[np.unique(seg[np.asarray(forbidden, bool)])] = False
    return _keep_labels(seg, keep)


def _keep_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``labels`` with only the values where ``keep`` is true, renumbered 1..N (int32)."""
    lut = np.zeros(len(keep), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def region_pseudo_labels(
    image: np.ndarray,
    foreground: np.ndarray,
    forbidden: np.ndarray | None = None,
    *,
    n_classes: int = 4,
    sigma: float = 1.0,
    split_distance: int = 6,
    min_voxels: int = 300,
    max_voxels: int = 30_000,
    margin: int = 3,
    whole_region_voxels: int = 100_000,
) -> np.ndarray:
    """Open-set objects bounded by image edges: intensity classes split at their narrow necks.

    SLIC supervoxels (:func:`pseudo_labels`) cut homogeneous tissue along arbitrary lines, so a
    crop centred on one teaches "an object may end where the image does not change". Here the
    smoothed image is split into ``n_classes`` intensity classes (multi-Otsu inside
    ``foreground``); each class is opened (6-neighbourhood, which breaks one-voxel bridges) and
    cut into pieces by a watershed of its distance transform, seeded at distance maxima at least
    ``split_distance`` voxels apart. A piece's outer surface is therefore an intensity edge and
    its cuts lie at necks, as between two gyri or a nucleus and its neighbour.

    Args:
        image: ``(z, y, x)`` float image.
        foreground: where objects may lie (e.g. the head).
        forbidden: voxels no object may come within ``margin`` voxels of (the held-out
            structures: a region touching them, such as a ventricle beside the caudate, would
            teach the held-out kind of object).
        min_voxels / max_voxels: pieces outside this size range are dropped.
        whole_region_voxels: a connected region of one class up to this size that comes within
            ``margin`` of ``forbidden`` is dropped whole; a larger one loses only its pieces there.

    Returns:
        int32 map of objects (1..N, relabelled consecutively), 0 elsewhere.
    """
    from skimage.filters import threshold_multiotsu
    from skimage.segmentation import watershed

    fg = np.asarray(foreground, bool)
    if not fg.any():
        return np.zeros(np.shape(image), np.int32)
    smooth = ndimage.gaussian_filter(np.asarray(image, np.float32), sigma)
    classes = np.digitize(smooth, threshold_multiotsu(smooth[fg], classes=n_classes))
    cross = ndimage.generate_binary_structure(3, 1)
    banned = np.zeros(smooth.shape, bool)
    if forbidden is not None and np.any(forbidden):
        banned = ndimage.binary_dilation(np.asarray(forbidden, bool), iterations=max(1, margin))
    near = banned.copy()
    out = np.zeros(smooth.shape, np.int32)
    for c in range(n_classes):
        region = ndimage.binary_opening((classes == c) & fg, cross)
        if near.any():
            # a region of ordinary size that comes near a held-out structure goes whole, not only
            # its near pieces (a ventricle beside the caudate must not survive as its far half);
            # a region larger than anything one segments (the white matter) loses only those
            components, _ = ndimage.label(region, cross)
            sizes = np.bincount(components.ravel())
            touched = np.unique(components[near])
            touched = touched[(touched > 0) & (sizes[touched] <= whole_region_voxels)]
            banned |= np.isin(components, touched)
        dist = ndimage.distance_transform_edt(region)
        peaks = (dist == ndimage.maximum_filter(dist, size=2 * split_distance + 1)) & (dist >= 1.5)
        markers, _ = ndimage.label(peaks)
        pieces = watershed(-dist, markers, mask=region)
        out = np.where(pieces > 0, pieces + out.max(), out)
    sizes = np.bincount(out.ravel())
    keep = (sizes >= min_voxels) & (sizes <= max_voxels)
    keep[0] = False
    keep[np.unique(out[banned])] = False
    return _keep_labels(out, keep)


@dataclass
class RealVolume:
    """A real volume ready for training (held-out structures already removed).

    Attributes:
        source: source name (``nni_widget.data.SOURCES``).
        image: ``(z, y, x)`` float32 image as loaded (not normalised).
        instances: int32 instance map of the training structures.
        names: instance -> structure name.
        related: instance -> instances it may be merged with.
        pseudo: int32 map of pseudo-label supervoxels (0 where none).
        held_out: bool mask of the held-out structures (for checks; never a target).
        manifest: provenance (source, package, version, licence, file hashes, split).
        pseudo_coarse: further int32 pseudo-label maps: larger SLIC supervoxels, one per size
            asked of :func:`prepare_real` (``coarse_sizes``), then the elongated level
            (``elongation`` > 1); empty by default.
    """

    source: str
    image: np.ndarray
    instances: np.ndarray
    names: dict[int, str]
    related: dict[int, tuple[int, ...]]
    pseudo: np.ndarray
    held_out: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    pseudo_coarse: tuple[np.ndarray, ...] = ()


def prepare_real(
    source: str,
    cache_dir: Any = None,
    *,
    n_segments: int = 800,
    min_voxels: int = 50,
    max_voxels: int | None = 100_000,
    with_pseudo: bool = True,
    pseudo_method: str = "slic",
    coarse_sizes: Sequence[int] = (),
    elongation: float = 1.0,
    spacing: Sequence[float] | None = None,
) -> RealVolume:
    """Fetch (if needed) and prepare one real source for training.

    Instances above ``max_voxels`` are dropped: whole-brain tissue classes (MNI152 grey and white
    matter, ~0.6-1.1 M voxels) fill every training window, dominated the loss of a first run and are
    not the kind of object one segments interactively. The largest AAL region has ~40 k voxels.

    ``coarse_sizes`` adds SLIC levels (``RealVolume.pseudo_coarse``) whose supervoxels hold about that
    many voxels each (``n_segments`` = head voxels / size): the default level's supervoxels (300-1,300
    voxels, 10-18 voxels across on the training heads) are smaller than the structures one segments
    (caudate, thalamus, ventricles: 2-18 k voxels, 15-40 across), and a network trained on them alone
    learns that size.

    ``elongation`` > 1 adds one more level after those (last in ``RealVolume.pseudo_coarse``): SLIC
    supervoxels of the default size stretched that many times along the first (slice) axis
    (:func:`pseudo_labels`), objects that go on through the plane of an axial prompt for 30-60
    voxels, as the 1 mm structures one segments do and few default supervoxels do.

    ``spacing`` (mm, ``(dz, dy, dx)``) resamples the image (linear) and its labels (nearest) to that
    voxel size first (:func:`resample_to_spacing`), so that every later step, the pseudo-labels
    included, works on that grid. The network sees voxels, not millimetres: on the 6.5 mm slices of
    the pyradiomics brains an object 20 mm tall spans 3 slices, so training on their native grid
    teaches that real tissue ends a few voxels through the plane, where on the 1 mm scans one
    segments it goes on for 15-40.

    Raises:
        nni_widget.data.DataFetchError: the source cannot be fetched, or (with pseudo-labels)
            another source of its template space whose held-out structures it must avoid
            (:func:`held_out_from_shared_space`).
        ValueError: the source is evaluation-only (``Source.evaluation_only``, e.g. the lung CTs),
            or ``pseudo_method`` is neither ``"slic"`` (:func:`pseudo_labels`) nor
            ``"regions"`` (:func:`region_pseudo_labels`).
    """
    from nni_widget.data._sources import SOURCES, data_cache_dir, load_real

    if source in SOURCES and SOURCES[source].evaluation_only:
        raise ValueError(
            f"{source!r} is evaluation-only data (docs/data_sources.md): its images must not be trained "
            "on. Remove it from TrainConfig.real_sources; evaluate_real_held_out and the quick suite use it."
        )
    if pseudo_method not in PSEUDO_METHODS:
        raise ValueError(f"pseudo_method must be one of {PSEUDO_METHODS}, got {pseudo_method!r}")
    if any(int(size) < 1 for size in coarse_sizes):
        raise ValueError(f"coarse_sizes {tuple(coarse_sizes)} must be positive voxel counts")
    if not elongation >= 1:
        raise ValueError(f"elongation {elongation} must be >= 1 (1: no elongated pseudo-label level)")
    volume, semantic, names = load_real(source, cache_dir)
    native_spacing = [float(v) for v in volume.spacing]
    if spacing is not None:
        volume, semantic = resample_to_spacing(volume, semantic, spacing)
    image = np.asarray(volume.array, np.float32)
    held = held_out_labels(source, names)
    held_mask = np.isin(semantic, sorted(held))
    instances, semantic_of = instances_from_semantic(semantic, held, min_voxels, max_voxels)
    assert not (instances.astype(bool) & held_mask).any()
    inst_names = {i: names.get(s, str(s)) for i, s in semantic_of.items()}
    related = related_instances(instances, semantic_of, names)
    if with_pseudo:
        head = _head_mask(image)
        forbidden = held_mask | held_out_from_shared_space(source, volume, cache_dir)
        if pseudo_method == "regions":
            pseudo = region_pseudo_labels(image, head, forbidden)
        else:
            pseudo = pseudo_labels(image, head, forbidden, n_segments=n_segments)
        coarse = tuple(
            pseudo_labels(image, head, forbidden, n_segments=max(2, int(head.sum()) // int(size)),
                          min_voxels=max(200, int(size) // 8))
            for size in coarse_sizes
        )  # fmt: skip
        if elongation > 1:
            coarse += (pseudo_labels(image, head, forbidden, n_segments=n_segments, elongation=elongation),)
    else:
        pseudo = np.zeros(image.shape, np.int32)
        coarse = ()
    src = SOURCES[source]
    folder = data_cache_dir(cache_dir) / source
    fetched = json.loads((folder / "manifest.json").read_text())
    manifest = {
        "source": source,
        "package": src.package,
        "kind": src.kind,
        "version": src.version,
        "licence": src.licence,
        "licence_url": src.licence_url,
        "distribution": fetched.get("distribution"),
        "distribution_sha256": fetched.get("distribution_sha256"),
        "files": {r: e["sha256"] for r, e in fetched.get("files", {}).items()},
        "shape": list(image.shape),
        "native_spacing": native_spacing,
        "spacing": [float(v) for v in volume.spacing],
        "resampled_to": None if spacing is None else [float(v) for v in spacing],
        "held_out": sorted(names[v] for v in held),
        "held_out_labels": sorted(int(v) for v in held),
        "training_instances": len(inst_names),
        "pseudo_labels": int(pseudo.max()),
        "pseudo_method": pseudo_method if with_pseudo else None,
        "pseudo_coarse": {str(int(size)): int(m.max()) for size, m in zip(coarse_sizes, coarse)},
        "pseudo_excludes": [f"{o} held-out structures (through world coordinates, +{SHARED_SPACE_MARGIN} voxels)"
                            for o in SHARED_SPACE_SOURCES if o != source and source in SHARED_SPACE_SOURCES],
    }
    if with_pseudo and elongation > 1:  # only then: the manifests of runs without it stay as they were
        manifest["pseudo_elongated"] = {"factor": float(elongation), "labels": int(coarse[-1].max())}
    logger.info("%s: %d training instances, %d pseudo-labels, held out %s", source, len(inst_names),
                manifest["pseudo_labels"], manifest["held_out"])  # fmt: skip
    return RealVolume(source, image, instances, inst_names, related, pseudo, held_mask, manifest, coarse)


def resample_to_spacing(volume: Any, labels: np.ndarray, spacing: Sequence[float]) -> tuple[Any, np.ndarray]:
    """``volume`` (image, linear) and its ``labels`` (nearest) resampled to voxels of ``spacing`` mm.

    The grid keeps the volume's extent: each axis gets ``round(n * old / new)`` voxels (at least 1)
    whose edges align with the old grid's outer edges, and the returned volume's affine places
    them in the same world positions, so masks of other sources still map onto it
    (:func:`held_out_from_shared_space`).

    Raises:
        ValueError: ``spacing`` is not three positive numbers.
    """
    from nni_widget.io import Volume

    target = np.asarray(spacing, float)
    if target.shape != (3,) or not np.all(np.isfinite(target)) or np.any(target <= 0):
        raise ValueError(f"spacing {tuple(spacing)} must be three positive voxel sizes in mm, (dz, dy, dx)")
    old = np.asarray(volume.spacing, float)
    shape = np.asarray(volume.array.shape)
    new_shape = np.maximum(1, np.round(shape * old / target)).astype(int)
    if np.array_equal(new_shape, shape):
        return volume, labels
    zoom = new_shape / shape
    image = ndimage.zoom(np.asarray(volume.array, np.float32), zoom, order=1, mode="nearest", grid_mode=True)
    resampled = ndimage.zoom(np.asarray(labels), zoom, order=0, mode="nearest", grid_mode=True)
    # new index i sits at old index (i + 0.5) / zoom - 0.5 (grid_mode aligns the outer voxel edges)
    step = np.diag(np.append(1 / zoom, 1.0))
    step[:3, 3] = 0.5 / zoom - 0.5
    affine = volume.affine @ step
    return Volume(image, tuple(float(v) for v in old / zoom), affine), resampled


def _head_mask(image: np.ndarray) -> np.ndarray:
    """The head: the largest connected component of the bright voxels, holes filled.

    On the templates the background is exactly 0 and "bright" is above the 20th percentile of the
    nonzero voxels. A clinical scan's background is noise with a few zeros: there "bright" is above
    Otsu's threshold, and the holes are also filled slice by slice, since the dark CSF and bone of a
    thick-slice scan reach the first and last slices and are not enclosed in 3D.
    """
    noisy_background = (image == 0).mean() < 0.2
    if noisy_background:
        from skimage.filters import threshold_otsu

        bright = image > threshold_otsu(image)
    else:
        bright = image > np.percentile(image[image > 0], 20)
    components, n = ndimage.label(bright)
    if n > 1:
        bright = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    head = ndimage.binary_fill_holes(bright)
    if noisy_background:
        for axis in range(3):
            filled = [ndimage.binary_fill_holes(np.take(head, i, axis)) for i in range(head.shape[axis])]
            head |= np.stack(filled, axis)
    return head


def held_out_from_shared_space(source: str, volume: Any, cache_dir: Any = None) -> np.ndarray:
    """Held-out structures of the other sources of ``source``'s template space, on its grid.

    Each other source's held-out mask is resampled (nearest neighbour, through the two affines)
    onto ``volume``'s grid and dilated by :data:`SHARED_SPACE_MARGIN` voxels, which absorbs the
    anatomical differences between the two brains. Empty for a source outside
    :data:`SHARED_SPACE_SOURCES`.
    """
    from nni_widget.data._sources import load_real

    out = np.zeros(volume.array.shape, bool)
    if source not in SHARED_SPACE_SOURCES:
        return out
    for other in SHARED_SPACE_SOURCES:
        if other == source:
            continue
        other_volume, semantic, names = load_real(other, cache_dir)
        held = np.isin(semantic, sorted(held_out_labels(other, names))).astype(np.uint8)
        # voxel of this grid -> world -> voxel of the other grid
        to_other = np.linalg.inv(other_volume.affine) @ volume.affine
        out |= ndimage.affine_transform(held, to_other, order=0, output_shape=out.shape, cval=0).astype(bool)
    if out.any():
        out = ndimage.binary_dilation(out, iterations=SHARED_SPACE_MARGIN)
    return out


def real_manifest(volumes: Sequence[RealVolume]) -> dict[str, Any]:
    """One manifest for the real training data of a run (one entry per volume)."""
    return {"volumes": [v.manifest for v in volumes], "held_out": {k: list(v) for k, v in HELD_OUT.items()}}
