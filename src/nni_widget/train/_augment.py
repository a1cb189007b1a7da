"""Data augmentation: nnU-Net-style transforms plus per-axis scaling, transposes and inversion.

numpy / scipy only. Every function takes the ``numpy.random.Generator`` it draws from, in a fixed
order, so one seed gives one result. Spatial transforms move the image (linear interpolation) and
every label map (nearest neighbour, so label values survive) with the same mapping; the trainer
applies them to the labels *before* it simulates prompts, so prompts always sit on the augmented
objects. Intensity transforms touch the image only.

Arrays are ``(z, y, x)``; the image is float32 (z-scored), label maps are integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "AugmentParams",
    "intensity_augment",
    "mirror_transpose",
    "random_affine",
    "spatial_augment",
    "warp",
]


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges of the augmentations (the trainer builds it from ``TrainConfig``).

    Spatial: ``rotation_p`` (three angles ``U(-rotation_deg, rotation_deg)``), ``scale_p`` (isotropic
    ``scale_range``), ``axis_scale_p`` (independent per-axis factors in ``axis_scale_range``, DESIGN
    §4), ``elastic_p`` (smooth random displacement of up to ``elastic_magnitude`` voxels),
    ``flip_p`` per axis, ``transpose_p`` (a random axis permutation). Output edges are capped at
    ``max_edge`` (centre kept). ``magnify_p``: a further isotropic magnification in
    ``magnify_range``, output edges capped at ``magnify_max_edge``; objects grow past the network
    patch, so the engine's rule zooms out for them (2-4x) and the network sees what it sees on a
    large organ: a downsampled image and thin prompts averaged into faint ones. Intensity: ``noise_p`` (Gaussian, variance ``U(0, 0.1)``), ``blur_p``
    (sigma ``U(0.5, 1)``), ``brightness_p`` (multiply by ``U(0.75, 1.25)``), ``contrast_p``
    (``U(0.75, 1.25)`` about the mean, clipped to the old range), ``gamma_p`` (gamma ``U(0.7, 1.5)`` on
    the range-normalised image, mean and std restored; inverted gamma with ``gamma_invert_p``),
    ``invert_p`` (sign flip of the z-scored image).
    """

    rotation_p: float = 0.2
    rotation_deg: float = 30.0
    scale_p: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    axis_scale_p: float = 0.2
    axis_scale_range: tuple[float, float] = (0.5, 2.0)
    elastic_p: float = 0.0
    elastic_magnitude: float = 4.0
    flip_p: float = 0.5
    transpose_p: float = 0.5
    max_edge: int = 160
    magnify_p: float = 0.0
    magnify_range: tuple[float, float] = (2.0, 3.5)
    magnify_max_edge: int = 192
    noise_p: float = 0.1
    blur_p: float = 0.2
    brightness_p: float = 0.15
    contrast_p: float = 0.15
    gamma_p: float = 0.3
    gamma_invert_p: float = 0.1
    invert_p: float = 0.1


def _rotation(angles: Sequence[float]) -> np.ndarray:
    """Rotation matrix (z, y, x index space) from three angles in radians about the three axes."""
    out = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def random_affine(
    shape: Sequence[int], rng: np.random.Generator, params: AugmentParams
) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """Draw a rotation / scaling: the 3x3 matrix from output to input offsets and the output shape.

    A scale factor above 1 magnifies (objects grow, the output grows with them, up to
    ``params.max_edge`` per axis). Returns None when no spatial transform was drawn.
    """
    angles = np.zeros(3)
    factors = np.ones(3)
    drawn = False
    if rng.random() < params.rotation_p:
        angles = np.deg2rad(rng.uniform(-params.rotation_deg, params.rotation_deg, 3))
        drawn = True
    if rng.random() < params.scale_p:
        factors *= rng.uniform(*params.scale_range)
        drawn = True
    if rng.random() < params.axis_scale_p:
        lo, hi = np.log(params.axis_scale_range)
        factors *= np.exp(rng.uniform(lo, hi, 3))  # log-uniform: shrinking and growing equally likely
        drawn = True
    cap = params.max_edge
    if params.magnify_p > 0 and rng.random() < params.magnify_p:  # no draw when off: streams unchanged
        factors *= rng.uniform(*params.magnify_range)
        cap = max(cap, params.magnify_max_edge)
        drawn = True
    if not drawn:
        return None
    matrix = _rotation(angles) @ np.diag(1.0 / factors)
    out_shape = tuple(int(np.clip(round(n * f), 8, cap)) for n, f in zip(shape, factors))
    return matrix, out_shape  # type: ignore[return-value]


def _elastic_field(shape: Sequence[int], rng: np.random.Generator, magnitude: float) -> np.ndarray:
    """A smooth random displacement field ``(3, *shape)`` in voxels, max about ``magnitude``."""
    sigma = max(4.0, min(shape) / 8)
    small = [max(2, int(np.ceil(n / sigma))) + 2 for n in shape]
    coarse = rng.standard_normal((3, *small))
    field = np.stack([ndimage.zoom(c, [n / s for n, s in zip(shape, small)], order=3)[
        : shape[0], : shape[1], : shape[2]] for c in coarse])  # fmt: skip
    peak = np.abs(field).max()
    return (field * (magnitude / peak if peak > 0 else 0.0)).astype(np.float32)


def warp(
    image: np.ndarray,
    maps: Sequence[np.ndarray],
    matrix: np.ndarray,
    out_shape: Sequence[int],
    displacement: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Resample ``image`` (linear, outside = its minimum) and ``maps`` (nearest, outside = 0).

    Output voxel ``o`` reads input position ``matrix @ (o - c_out) + c_in (+ displacement[:, o])``,
    ``c`` the array centres.
    """
    c_in = (np.asarray(image.shape) - 1) / 2
    c_out = (np.asarray(out_shape) - 1) / 2
    if displacement is None:
        offset = c_in - matrix @ c_out
        img = ndimage.affine_transform(
            image, matrix, offset, out_shape, order=1, mode="constant", cval=float(image.min())
        )
        labs = [ndimage.affine_transform(m, matrix, offset, out_shape, order=0, mode="constant", cval=0)
                for m in maps]  # fmt: skip
        return img.astype(np.float32), labs
    grid = np.indices(out_shape, dtype=np.float32).reshape(3, -1) - c_out[:, None]
    coords = (matrix @ grid + c_in[:, None]).reshape(3, *out_shape) + displacement
    img = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=float(image.min()))
    labs = [ndimage.map_coordinates(m, coords, order=0, mode="constant", cval=0) for m in maps]
    return img.astype(np.float32), labs


def mirror_transpose(
    image: np.ndarray, maps: Sequence[np.ndarray], rng: np.random.Generator, params: AugmentParams
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random axis permutation (``transpose_p``) and flips (``flip_p`` per axis), exact."""
    maps = list(maps)
    if rng.random() < params.transpose_p:
        perm = tuple(int(a) for a in rng.permutation(3))
        image, maps = image.transpose(perm), [m.transpose(perm) for m in maps]
    flips = tuple(a for a in range(3) if rng.random() < params.flip_p)
    if flips:
        image, maps = np.flip(image, flips), [np.flip(m, flips) for m in maps]
    return np.ascontiguousarray(image), [np.ascontiguousarray(m) for m in maps]


def spatial_augment(
    image: np.ndarray, maps: Sequence[np.ndarray], rng: np.random.Generator, params: AugmentParams
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rotation / isotropic and per-axis scaling / optional elastic, then transposes and flips.

    Args:
        image: ``(z, y, x)`` float image.
        maps: label maps of the same shape (instances, pseudo-labels...).

    Returns:
        The image (float32) and maps (their dtypes kept), all of one new shape.
    """
    image = np.asarray(image, dtype=np.float32)
    maps = [np.asarray(m) for m in maps]
    affine = random_affine(image.shape, rng, params)
    elastic = rng.random() < params.elastic_p
    if affine is not None or elastic:
        matrix, out_shape = affine if affine is not None else (np.eye(3), image.shape)
        disp = _elastic_field(out_shape, rng, params.elastic_magnitude) if elastic else None
        image, maps = warp(image, maps, matrix, out_shape, disp)
    return mirror_transpose(image, maps, rng, params)


def intensity_augment(image: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """nnU-Net-style intensity transforms on a z-scored float image, then intensity inversion."""
    img = np.array(image, dtype=np.float32, copy=True)
    if rng.random() < params.noise_p:
        img += rng.normal(0.0, np.sqrt(rng.uniform(0.0, 0.1)), img.shape).astype(np.float32)
    if rng.random() < params.blur_p:
        img = ndimage.gaussian_filter(img, float(rng.uniform(0.5, 1.0)))
    if rng.random() < params.brightness_p:
        img *= np.float32(rng.uniform(0.75, 1.25))
    if rng.random() < params.contrast_p:
        lo, hi, mean = img.min(), img.max(), img.mean()
        img = np.clip((img - mean) * np.float32(rng.uniform(0.75, 1.25)) + mean, lo, hi)
    if rng.random() < params.gamma_p:
        invert = rng.random() < params.gamma_invert_p
        if invert:
            img = -img
        mean, std = img.mean(), img.std()
        lo, rng_width = img.min(), max(float(img.max() - img.min()), 1e-6)
        img = ((img - lo) / rng_width) ** np.float32(rng.uniform(0.7, 1.5)) * rng_width + lo
        img = (img - img.mean()) / max(float(img.std()), 1e-6) * std + mean
        if invert:
            img = -img
    if rng.random() < params.invert_p:
        img = -img
    return img.astype(np.float32, copy=False)
