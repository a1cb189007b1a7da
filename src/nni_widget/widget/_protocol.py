"""The widget's message protocol: browser strokes to prompts, prompts to and from JSON.

A finished stroke arrives as one message::

    {"kind": "prompt", "tool": "point" | "box" | "lasso" | "scribble", "positive": bool,
     "axis": 0 | 1 | 2, "index": int, "points": [[row, col], ...]}

``axis`` is the slicing axis of the view it was drawn on (0 axial = fixed z, 1 coronal = fixed y,
2 sagittal = fixed x), ``index`` the slice, and ``points`` continuous (row, col) voxel coordinates
of that slice (voxel centres at integers; rows/cols are the two remaining axes in (z, y, x) order).
Everything is validated here; a bad message raises :class:`PromptError` with what to do, before
anything reaches the session. Needs numpy only.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from ..prompts import Box, Lasso, Point, Prompt, PromptError, Scribble, VolumeMask, slice_axes

__all__ = ["TOOLS", "prompt_from_json", "prompt_from_stroke", "prompt_to_json"]

TOOLS = ("point", "box", "lasso", "scribble")
MAX_STROKE_POINTS = 20000


def _points(raw: Any) -> np.ndarray:
    try:
        p = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as e:
        raise PromptError(f"stroke points must be a list of [row, col] numbers, got {raw!r:.80}") from e
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise PromptError(f"stroke points must be a non-empty list of [row, col] pairs, got shape {p.shape}")
    if len(p) > MAX_STROKE_POINTS:
        raise PromptError(f"a stroke has {len(p)} points; at most {MAX_STROKE_POINTS} are accepted")
    if not np.isfinite(p).all():
        raise PromptError("stroke points must be finite numbers")
    return p


def prompt_from_stroke(msg: dict, shape: Sequence[int], scribble_width: float = 2.0) -> Prompt:
    """Turn one finished stroke message into a prompt on a volume of ``shape`` (Z, Y, X).

    Points must fall inside the image; boxes dragged past the image border are clipped to it
    (what the user meant); lassos and scribbles are clipped by the engine.
    """
    tool = msg.get("tool")
    if tool not in TOOLS:
        raise PromptError(f"unknown tool {tool!r}; use one of {TOOLS}")
    try:
        axis = int(msg.get("axis"))
        index = int(msg.get("index"))
    except (TypeError, ValueError) as e:
        raise PromptError(f"a stroke needs an integer axis and slice index, got {msg.get('axis')!r}, "
                          f"{msg.get('index')!r}") from e
    ra, ca = slice_axes(axis)
    if not 0 <= index < shape[axis]:
        raise PromptError(f"slice {index} is outside axis {axis} (0..{shape[axis] - 1})")
    positive = bool(msg.get("positive", True))
    pts = _points(msg.get("points"))
    rows, cols = shape[ra], shape[ca]
    if tool == "point":
        r, c = np.rint(pts[-1]).astype(int)
        if not (0 <= r < rows and 0 <= c < cols):
            raise PromptError(f"the point ({r}, {c}) is outside the {rows} x {cols} slice; click inside the image")
        zyx = [0, 0, 0]
        zyx[axis], zyx[ra], zyx[ca] = index, int(r), int(c)
        return Point(tuple(zyx), positive)
    if tool == "box":
        if len(pts) < 2:
            raise PromptError("a box needs two corners: drag from one corner to the other")
        lo = np.rint(np.minimum(pts[0], pts[-1]))
        hi = np.rint(np.maximum(pts[0], pts[-1]))
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [rows - 1, cols - 1])
        if (hi < lo).any():
            raise PromptError("the box lies outside the image; drag it over the object")
        return Box.on_slice(axis, index, tuple(lo), tuple(hi), positive)
    if tool == "lasso":
        if len(pts) < 3:
            raise PromptError("a lasso needs at least 3 points: draw a closed outline around the object")
        return Lasso.from_polygon(axis, index, pts, positive)
    return Scribble.from_polyline(axis, index, pts, positive, scribble_width)


def _pack(mask: np.ndarray) -> dict:
    m = np.asarray(mask, dtype=bool)
    return {"shape": list(m.shape), "bits": base64.b64encode(np.packbits(m).tobytes()).decode("ascii")}


def _unpack(d: dict) -> np.ndarray:
    shape = tuple(int(n) for n in d["shape"])
    bits = np.frombuffer(base64.b64decode(d["bits"]), dtype=np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)


def prompt_to_json(p: Prompt) -> dict:
    """A JSON-able description of a prompt that :func:`prompt_from_json` turns back into an equal one."""
    if isinstance(p, Point):
        return {"kind": "point", "zyx": list(p.zyx), "positive": p.positive}
    if isinstance(p, Box):
        out = {"kind": "box", "bbox": [list(b) for b in p.bbox], "positive": p.positive}
        return out if p.plane is None else {**out, "plane": p.plane}
    if isinstance(p, (Lasso, Scribble)):
        return {"kind": p.kind, "axis": p.axis, "index": p.index, "offset": list(p.offset),
                "mask": _pack(p.mask), "positive": p.positive}
    if isinstance(p, VolumeMask):
        return {"kind": "volume_" + p.kind, "offset": list(p.offset), "mask": _pack(p.mask),
                "positive": p.positive}
    raise TypeError(f"cannot serialise {type(p).__name__}")


def prompt_from_json(d: dict) -> Prompt:
    kind = d.get("kind")
    pos = bool(d.get("positive", True))
    if kind == "point":
        return Point(tuple(d["zyx"]), pos)
    if kind == "box":
        return Box(tuple(tuple(b) for b in d["bbox"]), pos, plane=d.get("plane"))
    if kind in ("lasso", "scribble"):
        cls = Lasso if kind == "lasso" else Scribble
        return cls(int(d["axis"]), int(d["index"]), _unpack(d["mask"]), tuple(d["offset"]), pos)
    if kind in ("volume_lasso", "volume_scribble"):
        return VolumeMask(kind[7:], _unpack(d["mask"]), tuple(d["offset"]), pos)
    raise PromptError(f"unknown saved prompt kind {kind!r}")
