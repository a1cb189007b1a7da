"""Synthetic data and bundled resources: procedural phantoms, a sample volume, the default model.

``make_phantom`` builds random body phantoms with labelled objects (numpy/scipy only);
``sample_volume``/``sample_labels`` load a small bundled phantom; ``default_model_folder`` points at the
bundled default model (Apache-2.0); ``load_real``/``prepare_real`` fetch real labelled volumes and
prepare them for training with a held-out split (``HELD_OUT``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from nni_widget.data._phantom import PhantomObject, make_phantom
from nni_widget.data import _real
from nni_widget.data._real import *  # noqa: F403  (its __all__ is part of ours, below)
from nni_widget.data._sources import SOURCES, DataFetchError, available_sources, data_cache_dir, fetch, load_real
from nni_widget.io import Volume, load_volume, save_mask, save_volume

__all__ = [
    "SOURCES",
    "DataFetchError",
    "PhantomObject",
    "available_sources",
    "data_cache_dir",
    "fetch",
    "load_real",
    "ResourceMissingError",
    "default_model_folder",
    "make_phantom",
    "sample_labels",
    "sample_path",
    "sample_volume",
    "write_sample",
]
__all__ += _real.__all__

SAMPLE_SHAPE = (64, 96, 96)
SAMPLE_SPACING = (2.0, 1.0, 1.0)
SAMPLE_SEED = 0
_SAMPLE_FILES = {"image": "phantom_ct.nii.gz", "labels": "phantom_ct_labels.nii.gz"}


class ResourceMissingError(FileNotFoundError):
    """A bundled resource (sample volume or default model) is not in the installed package."""


def _resource(*parts: str) -> Path:
    path = Path(str(resources.files("nni_widget.data").joinpath(*parts)))
    if not path.exists():
        raise ResourceMissingError(
            f"bundled resource {'/'.join(parts)} is missing from the installed package ({path}); "
            "reinstall nni_widget, or regenerate it (see src/nni_widget/data/sample/SOURCE.md and "
            "docs/default_model.md)"
        )
    return path


def sample_path(which: str = "image") -> Path:
    """Path of the bundled sample NIfTI file: ``"image"`` or ``"labels"``."""
    if which not in _SAMPLE_FILES:
        raise ValueError(f"which must be 'image' or 'labels', got {which!r}")
    return _resource("sample", _SAMPLE_FILES[which])


def sample_volume() -> Volume:
    """The bundled sample: a CT-like phantom, int16 Hounsfield-like values, shape (64, 96, 96) (z, y, x),
    spacing (2, 1, 1) mm. Procedural (``make_phantom(seed=0, modality="ct")``), Apache-2.0."""
    return load_volume(sample_path("image"))


def sample_labels() -> np.ndarray:
    """Instance labels (uint8, (z, y, x), 0 background) of :func:`sample_volume`."""
    return np.asarray(load_volume(sample_path("labels")).array)


def default_model_folder() -> Path:
    """Folder of the bundled default model (official checkpoint layout, loadable by the engine).

    Raises:
        ResourceMissingError: (a FileNotFoundError) when the model was not bundled.
    """
    folder = _resource("models", "default")
    if not (folder / "plans.json").is_file():
        raise ResourceMissingError(
            f"the bundled default model at {folder} has no plans.json; retrain it with "
            "`python tools/train_default_model.py` (see docs/default_model.md)"
        )
    return folder


def write_sample(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Regenerate the bundled sample files into ``folder`` (deterministic).

    Returns:
        Paths of the image and label files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image, labels = make_phantom(SAMPLE_SHAPE, seed=SAMPLE_SEED, spacing=SAMPLE_SPACING, modality="ct")
    # int16 keeps the file small: the values are Hounsfield-like, so whole units lose nothing visible
    vol = load_volume(np.clip(np.round(image), -1024, 3071).astype(np.int16), spacing=SAMPLE_SPACING)
    img_path = save_volume(vol, folder / _SAMPLE_FILES["image"])
    lab_path = save_mask(labels, vol, folder / _SAMPLE_FILES["labels"], dtype=np.uint8)
    return img_path, lab_path
