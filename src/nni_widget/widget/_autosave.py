"""Autosave and resume: the label map as NIfTI for people, the objects with their prompts for us.

``write_autosave(path, session)`` writes ``path`` (label map on the input image's grid) and
``<stem>.nni.npz`` beside it: for each object its name, its prompts (JSON) and its mask (bit-packed,
cropped to its bounding box, so overlapping objects survive). Both files are written to a temporary
name and renamed, so a crash mid-write leaves the previous save intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..io import Volume
from ..prompts import Prompt
from ._codec import nonzero_bounds
from ._protocol import prompt_from_json, prompt_to_json

__all__ = ["AutosaveError", "SavedObject", "SavedWork", "autosave_exists", "read_autosave", "sidecar_path",
           "write_autosave"]

FORMAT = "nni_widget-autosave-1"


class AutosaveError(ValueError):
    """An autosave that cannot be resumed (another image's work, or a damaged file)."""


@dataclass
class SavedObject:
    id: int
    name: str
    mask: np.ndarray
    prompts: tuple[Prompt, ...]


@dataclass
class SavedWork:
    objects: list[SavedObject]
    active_id: int
    position: Optional[list[int]]


def sidecar_path(path: os.PathLike | str) -> Path:
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(name + ".nni.npz")


def autosave_exists(path: os.PathLike | str) -> bool:
    return sidecar_path(path).is_file()


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)


def write_autosave(path: os.PathLike | str, session: Any, extra: Optional[dict] = None) -> None:
    """Write the session's label map to ``path`` and its objects to the sidecar (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    objs = []
    ids = list(session.objects)
    for k, (i, name) in enumerate(session.objects.items()):
        mask = session.object_mask(i)
        b = nonzero_bounds(mask)
        if b is not None:
            arrays[f"mask_{k}"] = np.packbits(mask[tuple(slice(lo, hi) for lo, hi in b)].astype(bool))
        objs.append({"id": int(i), "name": name, "bounds": [list(map(int, x)) for x in b] if b is not None else None,
                     "prompts": [prompt_to_json(p) for p in session.object_prompts(i)]})
    meta = {"format": FORMAT, "shape": list(session.shape), "affine": session.volume.affine.tolist(),
            "objects": objs, "active_index": ids.index(session.active_object), "active_id": int(session.active_object), **(extra or {})}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    side = sidecar_path(path)
    tmp_side = side.with_name(side.name + ".tmp.npz")
    np.savez(tmp_side, **arrays)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    tmp = path.with_name(path.name + ".tmp" + suffix)
    session.save(tmp)
    _replace(tmp, path)
    _replace(tmp_side, side)


def read_autosave(path: os.PathLike | str, volume: Volume) -> SavedWork:
    """Read what :func:`write_autosave` wrote, checking it belongs to ``volume``."""
    side = sidecar_path(path)
    try:
        with np.load(side) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except Exception as e:
        raise AutosaveError(f"cannot read the autosave {side}: {e}. Move it away to start afresh.") from e
    if meta.get("format") != FORMAT:
        raise AutosaveError(f"{side} is not an nni_widget autosave (format {meta.get('format')!r})")
    if list(meta["shape"]) != list(volume.shape) or not np.allclose(meta["affine"], volume.affine, atol=1e-4):
        raise AutosaveError(
            f"the autosave {side} belongs to another image (shape {meta['shape']}, this image "
            f"{list(volume.shape)}); pass a different autosave path or move that file away"
        )
    objects = []
    for k, o in enumerate(meta["objects"]):
        mask = np.zeros(volume.shape, dtype=np.uint8)
        if o["bounds"] is not None:
            b = o["bounds"]
            size = [hi - lo for lo, hi in b]
            crop = np.unpackbits(arrays[f"mask_{k}"], count=int(np.prod(size))).reshape(size)
            mask[tuple(slice(lo, hi) for lo, hi in b)] = crop
        objects.append(SavedObject(int(o.get("id", k + 1)), o["name"], mask, tuple(prompt_from_json(p) for p in o["prompts"])))
    active = meta.get("active_id", objects[0].id if objects else 1)
    return SavedWork(objects, int(active), meta.get("position"))
