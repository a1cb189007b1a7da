"""A long annotation session: many prompts, memory growth, and deep undo.

Builds a 128^3 phantom (``nni_widget.data.make_phantom``), opens a Session on the bundled default
model (AutoZoom on, ``max_undo`` >= the undo depth), and adds ``--n`` random prompts of all four
types (points, 2D boxes, lassos, scribbles; positive and negative; placed on the phantom's objects
or anywhere), starting a new object every ``--per-object`` prompts. Prints the resident memory every
50 prompts (and its growth since prompt 50, after the first passes have warmed the allocator), then
undoes ``--undo`` steps and checks after each that every object's mask equals the one recorded when
the session was at that step (SHA-256 of the masks, so the record itself costs no memory), then
redoes them all and checks again. Prints timings. Exits 1 if a mask differs.

Usage::

    python benchmarks/bench_long_session.py [--n 500] [--undo 100] [--max-undo 200] [--shape 128] [--seed 0]
        [--threads N]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time

import numpy as np


def _rss() -> tuple[int, int]:
    """(VmRSS, RssAnon) in bytes, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                out[k] = int(v.split()[0]) * 1024
    return out.get("VmRSS", 0), out.get("RssAnon", 0)


def _trim() -> None:
    """Return glibc's freed heap to the system (so RSS shows what is held, not what malloc caches)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _held(session) -> int:
    """Bytes the session itself holds for history and prompts (undo/redo XOR bits, stamp values, prompt
    masks) -- private attributes, read for accounting only."""
    n = sum(s.xor_bits.nbytes for s in session._undo + session._redo if s.xor_bits is not None)
    for o in session._objects.values():
        n += o.mask.numel()
        n += sum(st.values.numel() * st.values.element_size() for st in o.stamps if st.values is not None)
        n += sum(getattr(p, "mask", np.zeros(0)).nbytes for p in o.prompts)
    return n


def _mb(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def _digest(session) -> dict:
    return {i: hashlib.sha256(session.object_mask(i).tobytes()).hexdigest() for i in session.objects}


def _random_prompt(rng, labels, shape):
    """A random prompt of a random type, on a phantom object (70%) or anywhere (30%)."""
    from nni_widget.prompts import Box, Lasso, Point, Scribble

    Z, Y, X = shape
    if rng.random() < 0.7:
        ids = np.unique(labels)
        ids = ids[ids > 0]
        obj = labels == rng.choice(ids)
        zz, yy, xx = np.nonzero(obj)
        k = rng.integers(len(zz))
        c = np.array([zz[k], yy[k], xx[k]])
        ext = np.array([zz.max() - zz.min(), yy.max() - yy.min(), xx.max() - xx.min()]) + 1
    else:
        c = np.array([rng.integers(Z), rng.integers(Y), rng.integers(X)])
        ext = rng.integers(4, 40, size=3)
    positive = bool(rng.random() < 0.75)
    kind = rng.choice(["point", "box", "lasso", "scribble"])
    axis = int(rng.integers(3))
    ra, ca = [a for a in range(3) if a != axis]
    r, cc = float(c[ra]), float(c[ca])
    hr, hc = max(2.0, ext[ra] / 2), max(2.0, ext[ca] / 2)
    if kind == "point":
        return Point(tuple(int(v) for v in c), positive)
    if kind == "box":
        return Box.on_slice(axis, int(c[axis]), (max(0, r - hr), max(0, cc - hc)),
                            (min(shape[ra] - 1, r + hr), min(shape[ca] - 1, cc + hc)), positive)
    if kind == "lasso":
        ang = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 9))))
        rad = rng.uniform(0.5, 1.0, size=len(ang))
        verts = np.stack([r + hr * rad * np.sin(ang), cc + hc * rad * np.cos(ang)], 1)
        return Lasso.from_polygon(axis, int(c[axis]), verts, positive)
    pts = np.stack([r + rng.uniform(-hr, hr, size=4) / 2, cc + rng.uniform(-hc, hc, size=4) / 2], 1)
    return Scribble.from_polyline(axis, int(c[axis]), pts, positive)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="prompts in the session (default 500)")
    ap.add_argument("--undo", type=int, default=100, help="undo levels to walk back and check (default 100)")
    ap.add_argument("--shape", type=int, default=128, help="edge of the cubic phantom (default 128)")
    ap.add_argument("--per-object", type=int, default=125, help="prompts per object (default 125)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--max-undo", type=int, default=200, help="session max_undo (at least --undo)")
    ap.add_argument("--every", type=int, default=50, help="print memory every this many prompts")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from nni_widget.data import make_phantom
    from nni_widget.engine import Session
    from nni_widget.prompts import PromptError

    shape = (args.shape,) * 3
    image, labels = make_phantom(shape, seed=args.seed)
    session = Session(max_undo=max(args.max_undo, args.undo))
    session.set_image(image)
    print(f"phantom {shape}, model patch {session.model.patch_size}, device {session.device}, "
          f"threads {torch.get_num_threads()}, max_undo {session.max_undo}")
    rng = np.random.default_rng(args.seed)

    history = [_digest(session)]  # history[k]: object masks after step k (step 0: the start)
    times, refused, kinds = [], 0, {}
    rss_at = {}
    print("RSS and anon after malloc_trim; 'held' = masks + undo/redo XOR bits + stamps + prompt masks")
    print(f"{'prompts':>8} {'RSS':>13} {'anon':>13} {'held':>13} {'objects':>8} {'median s/prompt':>16}")
    t_all = time.perf_counter()
    for n in range(1, args.n + 1):
        if n > 1 and (n - 1) % args.per_object == 0:
            session.new_object()  # not a history step
        p = _random_prompt(rng, labels, shape)
        t = time.perf_counter()
        try:
            session.add(p)
        except PromptError as e:  # not expected for these prompts; counted, the session goes on
            refused += 1
            print(f"prompt {n} refused: {e}")
            continue
        times.append(time.perf_counter() - t)
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
        history.append(_digest(session))
        if len(history) > args.undo + 1:
            history.pop(0)
        if n % args.every == 0 or n == args.n:
            _trim()
            rss_at[n] = _rss()
            print(f"{n:8d} {_mb(rss_at[n][0])} {_mb(rss_at[n][1])} {_mb(_held(session))} {len(session.objects):8d} "
                  f"{statistics.median(times[-args.every:]):16.3f}")
    t_prompts = time.perf_counter() - t_all
    marks = sorted(rss_at)
    if len(marks) >= 2:
        first = marks[0]
        g_rss = rss_at[marks[-1]][0] - rss_at[first][0]
        g_anon = rss_at[marks[-1]][1] - rss_at[first][1]
        span = marks[-1] - first
        print(f"growth from prompt {first} to {marks[-1]}: RSS {g_rss / 2**20:+.1f} MiB, anon {g_anon / 2**20:+.1f} MiB "
              f"({g_anon / max(span, 1) / 1024:+.1f} KiB per prompt)")
    print(f"{len(times)} prompts in {t_prompts:.1f} s: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s; by type {kinds}; refused {refused}")

    # walk back
    depth = min(args.undo, len(history) - 1)
    bad = 0
    t = time.perf_counter()
    for k in range(1, depth + 1):
        if session.undo() is None:
            print(f"undo {k}: nothing to undo")
            bad += 1
            break
        want = history[-1 - k]
        got = {i: d for i, d in _digest(session).items() if i in want}
        if got != want:
            bad += 1
            print(f"undo {k}: masks differ from the recorded ones")
    t_undo = time.perf_counter() - t
    t = time.perf_counter()
    for k in range(depth - 1, -1, -1):
        session.redo()
        want = history[-1 - k]
        if {i: d for i, d in _digest(session).items() if i in want} != want:
            bad += 1
            print(f"redo to {k} steps back: masks differ from the recorded ones")
    t_redo = time.perf_counter() - t
    print(f"undo {depth} levels: {t_undo:.2f} s ({1000 * t_undo / max(depth, 1):.1f} ms each incl. checks), "
          f"redo {depth}: {t_redo:.2f} s; mismatches: {bad}")
    print("OK" if bad == 0 else "FAILED")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
