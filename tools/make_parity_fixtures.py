"""Produce the committed parity fixtures of the reference nnInteractive engine.

The fixtures under ``tests/fixtures/parity/`` record, voxel for voxel, what the public reference
engine (``nninteractive`` 2.6.0) does on a small random-weight checkpoint, so that the project's own
engine can be checked against it in CI *without* the reference package installed.

This script NEEDS the reference package. Run it from a throwaway virtual environment, never from the
project's own environment::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install nninteractive==2.6.0 torch==2.13.0 \
        --extra-index-url https://download.pytorch.org/whl/cpu
    /tmp/refvenv/bin/python tools/make_parity_fixtures.py --out tests/fixtures/parity \
        --ckpt-tool ../shared/tools/make_fake_official_ckpt.py

It builds the checkpoint with ``make_fake_official_ckpt.py CKPT --small --seed N`` (in a temporary
folder unless ``--ckpt-dir`` is given), generates a procedural image, plays a list of prompt sequences
through ``nnInteractiveInferenceSession`` on the CPU (one thread, ``torch_n_threads=1``, defaults
otherwise: AutoZoom on, dense interaction storage), and writes:

* ``image.npz``          the int16 test volume (fed to the reference as float32, shape 1xZxYxX)
* ``sequences.json``     checkpoint/engine facts, every prompt (neutral JSON form) and per-prompt
                         metadata (zoom passes, border tests, refinement boxes, logit margins, ...)
* ``masks.npz``          the full mask after every prompt (np.packbits of the C-order flattened
                         uint8 mask) and the initial segmentations used as prompts
* ``intermediates.json`` / ``intermediates.npz``  interaction channels as the reference stores them
                         after single prompts and a 3-prompt decay sequence, the normalisation
                         statistics, and summaries of two network inputs (one plain, one zoomed)

The fixtures are committed; CI only reads them. Running the script twice gives byte-identical files
(zip members are written with a fixed timestamp, JSON holds no timings).

The reference package is only instrumented here (bound methods of the session instance and module
functions are wrapped at run time to observe them); the package itself is not modified.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

import numpy as np

SHAPE = (96, 88, 80)  # (z, y, x)
IMAGE_SEED = 20250
NP_GLOBAL_SEED = 0  # np.random.seed(...) before every prompt (refinement random fallback uses it)


# --------------------------------------------------------------------------------------------- image
def make_image(shape=SHAPE, seed=IMAGE_SEED) -> np.ndarray:
    """Deterministic int16 test volume (z, y, x): smooth noise, bright and dark ellipsoids, zero border.

    Values are integers (CT-like), so the volume is stored losslessly and compactly as int16; the
    reference receives it converted to float32. Slices z < 3 and x >= 76 are exactly 0 so that the
    nonzero bounding box used for the normalisation statistics is smaller than the image.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    noise = gaussian_filter(rng.standard_normal(shape), sigma=3.0, mode="reflect")
    noise *= 25.0 / noise.std()
    fine = rng.standard_normal(shape) * 6.0
    img = 100.0 + noise + fine
    # (center z, y, x), (radii), amplitude
    blobs = [
        ((48, 44, 40), (14, 12, 10), 260.0),  # bright, central
        ((30, 60, 25), (20, 24, 17), 200.0),  # bright, large
        ((70, 24, 56), (10, 11, 12), -170.0),  # dark
        ((88, 78, 66), (9, 9, 8), 300.0),  # bright, touching the far corner
        ((18, 20, 60), (6, 7, 6), 180.0),  # bright, small
    ]
    for c, r, a in blobs:
        d2 = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        img += a / (1.0 + np.exp((np.sqrt(d2) - 1.0) * 8.0))  # soft-edged ellipsoid
    img = np.round(img).astype(np.int16)
    img[:3] = 0
    img[:, :, 76:] = 0
    img[img == 0] = 0
    return img


def ellipsoid_mask(center, radii, shape=SHAPE) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    d2 = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), center, radii))
    return (d2 <= 1.0).astype(np.uint8)


# ----------------------------------------------------------------------------------- prompt drawing
def _slice_to_3d(axis: int, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """2D pixel coordinates on the slice ``index`` of ``axis`` -> (n, 3) voxel coordinates (z, y, x).

    The 2D slice's (row, col) are the two remaining axes in increasing order.
    """
    vox = np.zeros((len(rows), 3), dtype=np.int64)
    other = [a for a in range(3) if a != axis]
    vox[:, axis] = index
    vox[:, other[0]] = rows
    vox[:, other[1]] = cols
    return vox


def _clip_unique(vox: np.ndarray, shape=SHAPE) -> list[list[int]]:
    ok = np.all((vox >= 0) & (vox < np.array(shape)), axis=1)
    vox = np.unique(vox[ok], axis=0)  # lexicographic (z, y, x) order
    return vox.tolist()


def lasso_prompt(axis: int, index: int, polygon: list[list[float]], positive: bool) -> dict:
    """Filled polygon on one slice. ``polygon``: vertices (row, col) in the slice's 2D frame."""
    from skimage.draw import polygon as draw_polygon

    other = [a for a in range(3) if a != axis]
    p = np.asarray(polygon, dtype=np.float64)
    rr, cc = draw_polygon(p[:, 0], p[:, 1], shape=(SHAPE[other[0]], SHAPE[other[1]]))
    vox = _clip_unique(_slice_to_3d(axis, index, rr, cc))
    return {
        "type": "lasso",
        "positive": positive,
        "axis": axis,
        "slice": index,
        "polygon": polygon,
        "voxels": vox,
    }


def scribble_prompt(axis: int, index: int, polyline: list[list[int]], positive: bool) -> dict:
    """Polyline on one slice, 2 pixels wide (each line pixel also sets its +1 row/col neighbours)."""
    from skimage.draw import line as draw_line

    rows, cols = [], []
    for (r0, c0), (r1, c1) in itertools.pairwise(polyline):
        rr, cc = draw_line(r0, c0, r1, c1)
        for dr in (0, 1):
            for dc in (0, 1):
                rows.append(rr + dr)
                cols.append(cc + dc)
    vox = _clip_unique(_slice_to_3d(axis, index, np.concatenate(rows), np.concatenate(cols)))
    return {
        "type": "scribble",
        "positive": positive,
        "axis": axis,
        "slice": index,
        "polyline": polyline,
        "width": 2,
        "voxels": vox,
    }


def point(z, y, x, positive=True) -> dict:
    return {"type": "point", "coords": [z, y, x], "positive": positive}


def bbox(b, positive=True) -> dict:
    return {"type": "bbox", "bbox": [list(i) for i in b], "positive": positive}


def make_sequences() -> tuple[list[dict], dict[str, np.ndarray]]:
    """The prompt sequences. Each starts from reset_interactions on the same image."""
    init_masks = {
        "initial_seg/initseg_then_prompts": ellipsoid_mask((30, 60, 25), (18, 22, 15)),
        "initial_seg/initseg_predict": ellipsoid_mask((50, 42, 38), (12, 10, 9)),
    }
    S: list[dict] = []

    def seq(name, desc, prompts):
        S.append({"name": name, "description": desc, "prompts": prompts})

    # ---- points
    seq("point_pos_center", "positive point in the central bright blob", [point(48, 44, 40)])
    seq("point_neg_center", "negative point alone", [point(48, 44, 40, False)])
    seq("point_pos_dark", "positive point in the dark blob", [point(70, 24, 56)])
    seq(
        "point_border_corner",
        "positive point at a corner, inside the zero (padding-like) slab",
        [point(1, 2, 78)],
    )
    seq("point_border_face", "positive point on the last z slice", [point(95, 44, 40)])
    # ---- 2D boxes on each axis
    seq("bbox_axis0_pos", "2D box on z slice 41", [bbox([[41, 42], [30, 58], [28, 52]])])
    seq("bbox_axis1_neg", "negative 2D box on y slice 44", [bbox([[34, 62], [44, 45], [26, 54]], False)])
    seq("bbox_axis2_pos", "2D box on x slice 25 (large blob)", [bbox([[12, 50], [38, 82], [25, 26]])])
    seq(
        "bbox_wide_axis0",
        "wide 2D box: extent 84 + 64//3 > 64, starts zoomed out",
        [bbox([[48, 49], [2, 86], [4, 76]])],
    )
    seq(
        "bbox_wide_axis2",
        "wide 2D box on an x slice, starts zoomed out",
        [bbox([[3, 93], [5, 85], [40, 41]])],
    )
    seq(
        "bbox_border_clipped",
        "box given partly outside the image (reference clips it)",
        [bbox([[-4, 20], [70, 95], [10, 11]])],
    )
    seq(
        "bbox_line",
        "box with extent 1 in two axes (a line), still a 2D box",
        [bbox([[50, 51], [10, 60], [33, 34]])],
    )
    # ---- lassos on each axis
    seq(
        "lasso_axis0_pos",
        "lasso on z slice 48",
        [lasso_prompt(0, 48, [[30, 28], [32, 52], [58, 54], [60, 30], [45, 22]], True)],
    )
    seq(
        "lasso_axis1_neg",
        "negative lasso on y slice 24 (dark blob)",
        [lasso_prompt(1, 24, [[58, 42], [60, 70], [82, 68], [80, 44]], False)],
    )
    seq(
        "lasso_axis2_pos",
        "lasso on x slice 25 (large blob)",
        [lasso_prompt(2, 25, [[12, 40], [14, 80], [48, 84], [50, 38], [30, 34]], True)],
    )
    seq(
        "lasso_wide_axis1",
        "wide lasso on y slice 60, starts zoomed out",
        [lasso_prompt(1, 60, [[4, 4], [6, 74], [90, 72], [92, 6], [50, 20]], True)],
    )
    # ---- scribbles on each axis
    seq(
        "scribble_axis0_pos",
        "scribble on z slice 48",
        [scribble_prompt(0, 48, [[36, 32], [44, 40], [50, 38], [54, 46]], True)],
    )
    seq(
        "scribble_axis1_pos",
        "scribble on y slice 60",
        [scribble_prompt(1, 60, [[16, 14], [30, 24], [44, 30]], True)],
    )
    seq(
        "scribble_axis2_neg",
        "negative scribble on x slice 56",
        [scribble_prompt(2, 56, [[62, 16], [70, 24], [78, 32]], False)],
    )
    seq(
        "scribble_wide_axis0",
        "long scribble on z slice 30, starts zoomed out",
        [scribble_prompt(0, 30, [[4, 6], [40, 20], [60, 50], [84, 72]], True)],
    )
    # ---- multi-prompt sequences (decay matters)
    seq(
        "multi_mixed_1",
        "point+, box-, scribble+, lasso-, point-",
        [
            point(48, 44, 40),
            bbox([[30, 66], [44, 45], [30, 50]], False),
            scribble_prompt(0, 48, [[36, 32], [44, 40], [52, 44]], True),
            lasso_prompt(2, 40, [[40, 30], [42, 50], [56, 52], [54, 32]], False),
            point(50, 40, 36, False),
        ],
    )
    seq(
        "multi_mixed_2",
        "wide box+, point-, lasso+, scribble-",
        [
            bbox([[10, 70], [20, 86], [25, 26]]),
            point(30, 60, 25, False),
            lasso_prompt(0, 30, [[40, 8], [44, 40], [80, 42], [78, 10]], True),
            scribble_prompt(1, 60, [[20, 10], [40, 30]], False),
        ],
    )
    seq(
        "multi_points",
        "five points alternating sign, some overlapping (max-merge, decay)",
        [
            point(48, 44, 40),
            point(50, 44, 42, False),
            point(48, 46, 40),
            point(70, 24, 56),
            point(49, 44, 41, False),
        ],
    )
    seq(
        "multi_boxes_same_channel",
        "overlapping positive boxes on one slice then a negative box",
        [
            bbox([[41, 42], [30, 58], [28, 52]]),
            bbox([[41, 42], [36, 64], [20, 46]]),
            bbox([[41, 42], [40, 50], [36, 44]], False),
        ],
    )
    seq(
        "initseg_then_prompts",
        "initial segmentation (no prediction), then point- and box+",
        [
            {"type": "initial_seg", "mask_key": "initial_seg/initseg_then_prompts", "run_prediction": False},
            point(30, 60, 25, False),
            bbox([[48, 49], [30, 58], [28, 52]]),
        ],
    )
    seq(
        "initseg_predict",
        "initial segmentation with run_prediction=True (full refine), then scribble+",
        [
            {"type": "initial_seg", "mask_key": "initial_seg/initseg_predict", "run_prediction": True},
            scribble_prompt(2, 56, [[62, 16], [70, 24], [78, 32]], True),
        ],
    )
    seq(
        "border_multi",
        "prompts at several borders: points, an edge-touching lasso, an edge scribble",
        [
            point(94, 86, 2),
            point(0, 44, 79),
            lasso_prompt(0, 90, [[60, 50], [60, 79], [87, 79], [87, 50]], True),
            scribble_prompt(2, 0, [[0, 0], [40, 30], [95, 87]], False),
        ],
    )
    return S, init_masks


# ------------------------------------------------------------------------------------ npz / hashing
def save_npz_deterministic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so reruns give identical bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def state_dict_sha256(state_dict) -> str:
    """sha256 over (name, raw bytes) of every tensor, in state-dict order."""
    h = hashlib.sha256()
    for k, v in state_dict.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def f32_hex(v) -> str:
    return np.float32(v).tobytes().hex()


def nonzero_bbox(a: np.ndarray):
    nz = np.argwhere(a != 0)
    if len(nz) == 0:
        return None
    return [[int(lo), int(hi) + 1] for lo, hi in zip(nz.min(0), nz.max(0))]


def dump_json(obj, path: str) -> None:
    """Indented JSON with innermost numeric lists ([z, y, x], [lo, hi]) kept on one line."""
    text = json.dumps(jsonable(obj), indent=1)
    text = re.sub(
        r"\[\s*([-0-9.eE+]+(?:,\s*[-0-9.eE+]+)*)\s*\]",
        lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
        text,
    )
    with open(path, "w") as f:
        f.write(text + "\n")


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    return x


# ------------------------------------------------------------------------------- instrumentation
class Recorder:
    """Wraps (at run time, on one session instance and the bbox module) the reference's steps."""

    def __init__(self, sess):
        import nnInteractive.inference.inference_session as isess
        import nnInteractive.utils.bboxes as bxm

        self.sess = sess
        self.rec: dict = {}
        self.capture_inputs = 0  # capture the next N network inputs
        self.captured: list = []
        r = self

        from nnInteractive.utils.rounding import round_to_nearest_odd

        orig_build = sess._build_network_input
        patch = list(sess.configuration_manager.patch_size)

        def build(center, zoom):
            out = orig_build(center, zoom)
            scaled = [int(v) for v in out[1]]
            resized = scaled != patch
            r.rec.setdefault("passes", []).append(
                {
                    "zoom_factor": float(zoom),
                    "center": [int(c) for c in center],
                    "window": out[2],
                    "window_size": scaled,
                    "resized_to_patch": resized,
                    "point_scribble_maxpool_kernel": round_to_nearest_odd(zoom * 2 - 1) if resized else None,
                }
            )
            return out

        sess._build_network_input = build

        orig_detect = sess._detect_change_at_border

        def detect(pred, prev, *a, **k):
            res = orig_detect(pred, prev, *a, **k)
            faces = []
            for dim in range(pred.ndim):
                for idx in (0, pred.shape[dim] - 1):
                    sp = prev.select(dim, idx).float()
                    sc = pred.select(dim, idx).float()
                    faces.append([int(sp.sum()), int(sc.sum()), int((sp != sc).sum())])
            r.rec["passes"][-1]["border_change"] = bool(res)
            r.rec["passes"][-1]["faces_prev_cur_diff"] = faces
            return res

        sess._detect_change_at_border = detect

        orig_patch_bbox = sess._add_patch_for_bbox_interaction

        def patch_bbox(b):
            r.rec["bbox_after_rounding_and_clipping"] = [list(map(int, i)) for i in b]
            return orig_patch_bbox(b)

        sess._add_patch_for_bbox_interaction = patch_bbox

        orig_plan = sess._plan_refinement_bboxes

        def plan(pred, scaled_bbox, force_full_refine):
            r.rec["gen_calls"] = []
            r.rec["fallback_boxes"] = []
            boxes = orig_plan(pred, scaled_bbox, force_full_refine)
            r.rec["refinement_boxes"] = boxes
            r.rec["force_full_refine"] = bool(force_full_refine)
            return boxes

        sess._plan_refinement_bboxes = plan

        orig_gen = bxm.generate_bounding_boxes

        def gen(
            mask,
            bbox_size=(192, 192, 192),
            stride=(16, 16, 16),
            margin=(10, 10, 10),
            max_depth=5,
            current_depth=0,
        ):
            call = {
                "depth": current_depth,
                "stride_arg": stride,
                "mask_shape": list(mask.shape),
                "mask_voxels": int(mask.sum()),
            }
            if current_depth == 0:
                m = mask.cpu().numpy()
                call["mask_bbox_local"] = nonzero_bbox(m)
            r.rec.setdefault("gen_calls", []).append(call)
            out = orig_gen(mask, bbox_size, stride, margin, max_depth, current_depth)
            call["n_boxes"] = len(out)
            return out

        isess.generate_bounding_boxes = gen
        bxm.generate_bounding_boxes = gen

        orig_fb = bxm.random_sampling_fallback

        def fb(mask, bbox_size=(192, 192, 192), margin=(10, 10, 10), n_samples=25):
            n_before = int(mask.sum())
            out = orig_fb(mask, bbox_size, margin, n_samples)
            r.rec.setdefault("fallback_boxes", []).append(
                {"uncovered_voxels": n_before, "n_samples": n_samples, "boxes_local": out}
            )
            return out

        bxm.random_sampling_fallback = fb

        def fwd_pre(module, args):
            if r.capture_inputs > 0:
                r.captured.append(args[0].detach().clone())
                r.capture_inputs -= 1

        def fwd_hook(module, args, out):
            logits = out[0].float()
            margin = (logits[1] - logits[0]).abs()
            r.rec.setdefault("forwards", []).append(
                {
                    "min_abs_logit_margin": float(margin.min()),
                    "n_margin_lt_1e-3": int((margin < 1e-3).sum()),
                    "n_margin_lt_1e-2": int((margin < 1e-2).sum()),
                    "fg_voxels_in_patch": int((logits[1] > logits[0]).sum()),
                }
            )

        sess.network.register_forward_pre_hook(fwd_pre)
        sess.network.register_forward_hook(fwd_hook)

    def begin(self):
        self.rec = {}


# ------------------------------------------------------------------------------------------ driver
def build_checkpoint(tool: str, ckpt_dir: str, seed: int) -> list[str]:
    cmd = [sys.executable, tool, ckpt_dir, "--small", "--seed", str(seed)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cmd


def make_session(ckpt_dir: str, threads: int):
    import torch
    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

    with contextlib.redirect_stdout(io.StringIO()):
        sess = nnInteractiveInferenceSession(
            device=torch.device("cpu"),
            use_torch_compile=False,
            verbose=False,
            torch_n_threads=threads,
            do_autozoom=True,
        )
        sess.initialize_from_trained_model_folder(ckpt_dir)
    torch.set_num_threads(threads)
    return sess


def prompt_array(p: dict) -> np.ndarray:
    arr = np.zeros(SHAPE, dtype=np.uint8)
    v = np.asarray(p["voxels"], dtype=np.int64)
    arr[v[:, 0], v[:, 1], v[:, 2]] = 1
    return arr


def apply_prompt(sess, p: dict, init_masks: dict):
    t = p["type"]
    if t == "point":
        return sess.add_point_interaction(tuple(p["coords"]), include_interaction=p["positive"])
    if t == "bbox":
        return sess.add_bbox_interaction(p["bbox"], include_interaction=p["positive"])
    if t == "lasso":
        return sess.add_lasso_interaction(prompt_array(p), include_interaction=p["positive"])
    if t == "scribble":
        return sess.add_scribble_interaction(prompt_array(p), include_interaction=p["positive"])
    if t == "initial_seg":
        return sess.add_initial_seg_interaction(
            init_masks[p["mask_key"]].copy(), run_prediction=p["run_prediction"]
        )
    raise ValueError(t)


def summarize_refinement(rec: dict, sess) -> dict:
    """Turn the raw record of one prompt into the metadata stored in sequences.json."""
    passes = rec.get("passes", [])
    out: dict[str, Any] = {
        "passes": passes,
        "n_forward_passes": len(rec.get("forwards", [])),
        "zoom_factors": [p["zoom_factor"] for p in passes],
        "final_zoom_factor": passes[-1]["zoom_factor"] if passes else None,
        "zoomed_out": bool(passes) and passes[-1]["zoom_factor"] > 1,
        "zoom_grew": len(passes) > 1,
    }
    if "refinement_boxes" in rec:
        boxes = rec["refinement_boxes"]
        gen_calls = rec.get("gen_calls", [])
        fb = rec.get("fallback_boxes", [])
        n_fb = sum(len(f["boxes_local"]) for f in fb)
        if len(gen_calls) == 0 or gen_calls[0]["n_boxes"] == 0:
            sources = ["prompt_fallback"] * len(boxes)
        else:
            sources = ["greedy"] * (len(boxes) - n_fb) + ["random_fallback"] * n_fb
        out["refinement"] = {
            "n_boxes": len(boxes),
            "boxes": boxes,
            "box_sources": sources,
            "force_full_refine": rec.get("force_full_refine", False),
            "generate_bounding_boxes_calls": gen_calls,
            "random_fallback_calls": fb,
        }
    else:
        out["refinement"] = None
    if "bbox_after_rounding_and_clipping" in rec:
        out["bbox_after_rounding_and_clipping"] = rec["bbox_after_rounding_and_clipping"]
    out["forwards"] = rec.get("forwards", [])
    return out


def run_sequences(sess, recorder, img, sequences, init_masks, log):
    masks: dict[str, np.ndarray] = {k: np.packbits(v.ravel()) for k, v in init_masks.items()}
    results = []
    with contextlib.redirect_stdout(io.StringIO()):
        sess.set_image(img[None].astype(np.float32))
    target = np.zeros(SHAPE, dtype=np.uint8)
    sess.set_target_buffer(target)
    for si, s in enumerate(sequences):
        sess.reset_interactions()
        prev = target.copy()
        out_prompts = []
        for pi, p in enumerate(s["prompts"]):
            recorder.begin()
            np.random.seed(NP_GLOBAL_SEED)
            with contextlib.redirect_stdout(io.StringIO()):
                ret = apply_prompt(sess, p, init_masks)
            key = f"masks/{si:02d}_{s['name']}/{pi:02d}"
            masks[key] = np.packbits(target.ravel())
            fg = int(target.sum())
            meta = summarize_refinement(recorder.rec, sess)
            meta.update(
                {
                    "mask_key": key,
                    "return_value": ret,
                    "fg_voxels": fg,
                    "fg_fraction": fg / target.size,
                    "changed_voxels": int((target != prev).sum()),
                    "changed_bbox": nonzero_bbox(target != prev),
                    "interaction_intensity_after": float(sess.current_interaction_intensity),
                }
            )
            out_prompts.append({"prompt": p, "result": meta})
            log(
                f"{s['name']:28s} #{pi} {p['type']:11s} fg={fg / target.size:6.3f} "
                f"zoom={meta['zoom_factors']} boxes="
                f"{None if meta['refinement'] is None else meta['refinement']['box_sources']} ret={ret}"
            )
            prev = target.copy()
        results.append({"name": s["name"], "description": s["description"], "prompts": out_prompts})
    return results, masks


def crop_channels(inter, channels, intensity):
    """Crop each channel of the stored (fp16) interactions to its nonzero bbox; also give the values
    the network sees (the same crop divided by the running intensity in fp16, as the reference does)."""
    arrays, meta = {}, {}
    for ch in channels:
        a = inter[ch].numpy()
        bb = nonzero_bbox(a)
        if bb is None:
            continue
        sl = tuple(slice(lo, hi) for lo, hi in bb)
        stored = inter[ch][sl].clone()
        norm = stored.clone()
        if intensity != 1:
            norm /= intensity
        arrays[f"ch{ch}_stored"] = stored.numpy().astype(np.float16)
        arrays[f"ch{ch}_network"] = norm.numpy().astype(np.float16)
        meta[f"ch{ch}"] = {
            "offset": [lo for lo, _ in bb],
            "bbox": bb,
            "stored_max": float(stored.max()),
            "network_max": float(norm.max()),
            "n_nonzero": int((stored != 0).sum()),
        }
    return arrays, meta


def summarize_input(x, prefix: str, arrays: dict) -> dict:
    """Summary of one network input [1, 8, P, P, P]: per-channel sums and sha256 of the float32 bytes,
    interaction channels cropped to their nonzero bbox, and 4 central z-slices of the image channel."""
    dtype = str(x.dtype).replace("torch.", "")
    x = x[0].float()
    info = {"shape": list(x.shape), "dtype_fed_to_network": dtype, "channels": []}
    for c in range(x.shape[0]):
        a = x[c].numpy()
        ci = {
            "sum": float(a.astype(np.float64).sum()),
            "min": float(a.min()),
            "max": float(a.max()),
            "sha256_f32": hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest(),
            "nonzero_bbox": nonzero_bbox(a),
        }
        if c == 0:
            mid = a.shape[0] // 2
            arrays[f"{prefix}/ch0_slices_{mid - 2}_{mid + 2}"] = a[mid - 2 : mid + 2].astype(np.float32)
            ci["stored_slices_axis0"] = [mid - 2, mid + 2]
        elif ci["nonzero_bbox"] is not None:
            sl = tuple(slice(lo, hi) for lo, hi in ci["nonzero_bbox"])
            crop = a[sl]
            if np.isin(crop, (0.0, 1.0)).all():  # binary (previous segmentation): packed bits
                arrays[f"{prefix}/ch{c}_crop_packbits"] = np.packbits(crop.astype(np.uint8).ravel())
                ci["crop_storage"] = "packbits"
            else:
                arrays[f"{prefix}/ch{c}_crop"] = crop.astype(np.float32)
                ci["crop_storage"] = "float32"
        info["channels"].append(ci)
    return info


def run_intermediates(sess, recorder, img, log):
    import torch
    from nnInteractive.interaction.point import build_point

    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}

    # normalisation statistics, computed exactly as the reference does (float32 torch mean / std)
    with contextlib.redirect_stdout(io.StringIO()):
        sess.set_image(img[None].astype(np.float32))
    target = np.zeros(SHAPE, dtype=np.uint8)
    sess.set_target_buffer(target)
    sess._finish_preprocessing_and_initialize_interactions()
    pre = sess.preprocessed_image[0].numpy()
    t = torch.from_numpy(img.astype(np.float32))
    bb = nonzero_bbox(img)
    crop = t[tuple(slice(lo, hi) for lo, hi in bb)]
    mean, std = crop.mean(), crop.std()
    meta["normalization"] = {
        "nonzero_bbox": bb,
        "mean_float32": float(mean),
        "mean_float32_hex": f32_hex(mean.item()),
        "std_float32": float(std),
        "std_float32_hex": f32_hex(std.item()),
        "std_is_unbiased": True,
        "preprocessed_sha256_f32": hashlib.sha256(np.ascontiguousarray(pre).tobytes()).hexdigest(),
        "preprocessed_samples": {
            str(v): float(pre[v]) for v in [(0, 0, 0), (48, 44, 40), (95, 87, 79), (30, 60, 25), (70, 24, 56)]
        },
        "float64_mean_for_comparison": float(
            img[tuple(slice(lo, hi) for lo, hi in bb)].astype(np.float64).mean()
        ),
        "float64_std_ddof1_for_comparison": float(
            img[tuple(slice(lo, hi) for lo, hi in bb)].astype(np.float64).std(ddof=1)
        ),
    }
    strel = build_point((4, 4, 4), True, False).numpy()
    arrays["point_structuring_element_float64"] = strel
    meta["point_structuring_element"] = {
        "shape": list(strel.shape),
        "center_value": float(strel[4, 4, 4]),
        "rim_value_example_[0,4,4]": float(strel[0, 4, 4]),
        "n_nonzero": int((strel > 0).sum()),
    }

    cases = {
        "point": [point(48, 44, 40)],
        "bbox": [bbox([[41, 42], [30, 58], [28, 52]])],
        "lasso": [lasso_prompt(1, 24, [[58, 42], [60, 70], [82, 68], [80, 44]], True)],
        "scribble": [scribble_prompt(2, 56, [[62, 16], [70, 24], [78, 32]], False)],
        "decay3": [
            point(48, 44, 40),
            bbox([[30, 66], [44, 45], [30, 50]], False),
            scribble_prompt(0, 48, [[36, 32], [44, 40], [52, 44]], True),
        ],
        "wide_bbox_zoomed_input": [bbox([[48, 49], [2, 86], [4, 76]])],
        "zoomed_input_with_prev_seg": [
            point(48, 44, 40),
            scribble_prompt(0, 30, [[4, 6], [40, 20], [60, 50], [84, 72]], True),
        ],
    }
    # (case, step) whose first network input is summarised
    capture_steps = {
        ("point", 0),
        ("decay3", 2),
        ("wide_bbox_zoomed_input", 0),
        ("zoomed_input_with_prev_seg", 1),
    }
    channel_names = {
        1: "bbox_lasso_pos",
        2: "bbox_lasso_neg",
        3: "point_pos",
        4: "point_neg",
        5: "scribble_pos",
        6: "scribble_neg",
    }
    meta["interaction_channel_names"] = {str(k): v for k, v in channel_names.items()}
    meta["cases"] = {}
    for name, prompts in cases.items():
        sess.reset_interactions()
        steps = []
        for i, p in enumerate(prompts):
            recorder.begin()
            capture = (name, i) in capture_steps
            recorder.captured = []
            recorder.capture_inputs = 1 if capture else 0
            np.random.seed(NP_GLOBAL_SEED)
            with contextlib.redirect_stdout(io.StringIO()):
                ret = apply_prompt(sess, p, {})
            intensity = float(sess.current_interaction_intensity)
            a, m = crop_channels(sess.interactions, range(1, 7), intensity)
            for k, v in a.items():
                arrays[f"{name}/step{i}/{k}"] = v
            step = {
                "prompt": p,
                "interaction_intensity": intensity,
                "interaction_intensity_float32_hex": f32_hex(intensity),
                "channels": m,
                "return_value": ret,
                "zoom_factors": [q["zoom_factor"] for q in recorder.rec.get("passes", [])],
            }
            if capture and recorder.captured:
                step["first_network_input"] = summarize_input(
                    recorder.captured[0], f"{name}/step{i}/input", arrays
                )
                step["first_network_input"]["window"] = recorder.rec["passes"][0]["window"]
                step["first_network_input"]["zoom_factor"] = recorder.rec["passes"][0]["zoom_factor"]
            steps.append(step)
            log(f"intermediate {name} step {i}: intensity {intensity} channels {sorted(m)}")
        meta["cases"][name] = steps
    recorder.capture_inputs = 0
    return meta, arrays


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (tests/fixtures/parity)")
    ap.add_argument("--ckpt-tool", required=True, help="path to make_fake_official_ckpt.py")
    ap.add_argument("--ckpt-seed", type=int, default=0, help="--seed passed to the checkpoint tool")
    ap.add_argument("--ckpt-dir", default=None, help="where to build the checkpoint (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (results were made with 1)")
    ap.add_argument(
        "--variants-into",
        default=None,
        help="committed fixtures folder: after writing --out, record there the masks in which this CPU's "
        "run differs from them (masks_variants.npz, variants.json)",
    )
    args = ap.parse_args(argv)

    from importlib.metadata import version

    import nnInteractive  # noqa: F401  (fail early without the reference package)
    import torch

    os.makedirs(args.out, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = args.ckpt_dir or os.path.join(tmp, "ckpt_small")
        build_checkpoint(args.ckpt_tool, ckpt_dir, args.ckpt_seed)
        sd = torch.load(
            os.path.join(ckpt_dir, "fold_0", "checkpoint_final.pth"), map_location="cpu", weights_only=False
        )["network_weights"]
        sd_hash = state_dict_sha256(sd)
        with open(os.path.join(ckpt_dir, "inference_session_class.json")) as f:
            legacy = json.load(f)
        sess = make_session(ckpt_dir, args.threads)
        recorder = Recorder(sess)

        img = make_image()
        sequences, init_masks = make_sequences()
        results, masks = run_sequences(sess, recorder, img, sequences, init_masks, log)
        inter_meta, inter_arrays = run_intermediates(sess, recorder, img, log)

    n_prompts = sum(len(s["prompts"]) for s in results)
    all_meta = [p["result"] for s in results for p in s["prompts"]]
    summary = {
        "n_sequences": len(results),
        "n_prompts": n_prompts,
        "n_prompts_zoomed_out_at_end": sum(m["zoomed_out"] for m in all_meta),
        "n_prompts_zoom_grew": sum(m["zoom_grew"] for m in all_meta),
        "n_prompts_starting_zoomed": sum(
            bool(m["zoom_factors"]) and m["zoom_factors"][0] > 1 for m in all_meta
        ),
        "n_prompts_with_refinement": sum(m["refinement"] is not None for m in all_meta),
        "n_prompts_with_random_fallback_boxes": sum(
            m["refinement"] is not None and "random_fallback" in m["refinement"]["box_sources"]
            for m in all_meta
        ),
        "n_prompts_with_prompt_fallback_box": sum(
            m["refinement"] is not None and "prompt_fallback" in m["refinement"]["box_sources"]
            for m in all_meta
        ),
        "max_refinement_boxes": max(
            (m["refinement"]["n_boxes"] for m in all_meta if m["refinement"]), default=0
        ),
        "fg_fraction_min_max": [
            min(m["fg_fraction"] for m in all_meta),
            max(m["fg_fraction"] for m in all_meta),
        ],
        "min_abs_logit_margin_over_all_forwards": min(
            f["min_abs_logit_margin"] for m in all_meta for f in m["forwards"]
        ),
    }
    doc = {
        "format_version": 1,
        "generator": "tools/make_parity_fixtures.py",
        "reference": {
            "package": "nninteractive",
            "version": version("nninteractive"),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "device": "cpu",
            "torch_threads": args.threads,
        },
        "checkpoint": {
            "command": f"python make_fake_official_ckpt.py OUT --small --seed {args.ckpt_seed}",
            "seed": args.ckpt_seed,
            "state_dict_sha256": sd_hash,
            "state_dict_hash_rule": "sha256 over, for each state-dict entry in order: name (utf-8) then "
            "the tensor's raw C-contiguous bytes",
            "inference_session_class_json": legacy,
            "interaction_decay_used": sess.interaction_decay,
            "point_radius": 4,
            "patch_size": list(sess.configuration_manager.patch_size),
            "channel_mapping_interactions": {k: v for k, v in sess.channel_mapping.items()},
            "num_interaction_channels": sess.num_interaction_channels,
        },
        "session": {
            "class": "nnInteractiveInferenceSession",
            "device": "cpu",
            "use_torch_compile": False,
            "do_autozoom": True,
            "interactions_storage": "auto (resolved: tensor, fp16)",
            "enable_undo": True,
            "torch_n_threads": args.threads,
            "target_buffer": "numpy uint8 of the image's spatial shape",
            "numpy_global_seed_before_each_prompt": NP_GLOBAL_SEED,
        },
        "image": {
            "file": "image.npz",
            "key": "image",
            "shape_zyx": list(SHAPE),
            "dtype_stored": "int16",
            "fed_as": "float32 array of shape (1, Z, Y, X) to set_image",
            "seed": IMAGE_SEED,
            "sha256_int16": hashlib.sha256(img.tobytes()).hexdigest(),
        },
        "mask_format": "masks.npz[key] = np.packbits(mask.astype(uint8).ravel()) (C order, big-endian bit "
        "order); unpack with np.unpackbits(a, count=Z*Y*X).reshape(Z, Y, X)",
        "summary": summary,
        "sequences": results,
    }
    log(json.dumps(summary, indent=1))
    save_npz_deterministic(os.path.join(args.out, "image.npz"), {"image": img})
    save_npz_deterministic(os.path.join(args.out, "masks.npz"), masks)
    save_npz_deterministic(os.path.join(args.out, "intermediates.npz"), inter_arrays)
    dump_json(doc, os.path.join(args.out, "sequences.json"))
    inter_doc = {
        "format_version": 1,
        "arrays_file": "intermediates.npz",
        "checkpoint_state_dict_sha256": sd_hash,
        **inter_meta,
    }
    dump_json(inter_doc, os.path.join(args.out, "intermediates.json"))
    if args.variants_into:
        add_variants(args.out, args.variants_into, log)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def add_variants(new_dir: str, committed_dir: str, log) -> None:
    """Record in ``committed_dir`` the masks of ``new_dir`` that differ from its own.

    The random-weight checkpoint's logits are near ties (margins down to 1e-7), and the reference's
    own float32 arithmetic rounds differently on different CPU families (oneDNN picks other kernels on
    AVX2 than on AVX512): the same package, torch and prompts give a few masks that differ by tens to
    hundreds of voxels. Each such mask is kept as a variant, ``masks_variants.npz[f"{key}@{tag}"]``,
    with ``variants.json`` naming the CPU of each tag; the parity test accepts a mask equal to the
    committed one or to one of its variants.
    """
    new = np.load(os.path.join(new_dir, "masks.npz"))
    ref = np.load(os.path.join(committed_dir, "masks.npz"))
    if sorted(new.files) != sorted(ref.files):
        raise SystemExit("the new run has other mask keys than the committed fixtures: regenerate them instead")
    def read_json(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    new_seq = read_json(os.path.join(new_dir, "sequences.json"))
    ref_seq = read_json(os.path.join(committed_dir, "sequences.json"))
    if new_seq["checkpoint"]["state_dict_sha256"] != ref_seq["checkpoint"]["state_dict_sha256"]:
        raise SystemExit("the new run used another checkpoint than the committed fixtures")
    var_json = os.path.join(committed_dir, "variants.json")
    var_npz = os.path.join(committed_dir, "masks_variants.npz")
    doc = read_json(var_json) if os.path.isfile(var_json) else {"format_version": 1, "cpus": {}}
    arrays = dict(np.load(var_npz)) if os.path.isfile(var_npz) else {}
    differ = [k for k in sorted(new.files) if not np.array_equal(new[k], ref[k])
              and not any(np.array_equal(new[k], v) for kk, v in arrays.items() if kk.split("@")[0] == k)]
    if not differ:
        log("every mask equals the committed one or a recorded variant: nothing to add")
        return
    tag = f"cpu{len(doc['cpus']) + 1}"
    doc["cpus"][tag] = {"cpu": _cpu_name(), "masks": differ, "reference": new_seq["reference"]}
    for k in differ:
        arrays[f"{k}@{tag}"] = new[k]
    save_npz_deterministic(var_npz, arrays)
    dump_json(doc, var_json)
    log(f"{len(differ)} masks differ on this CPU ({doc['cpus'][tag]['cpu']}): recorded as variant {tag}")


if __name__ == "__main__":
    main()
