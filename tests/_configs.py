"""Configurations shared by several test modules (import as ``from _configs import ...``).

pytest puts ``tests/`` on ``sys.path`` (rootdir-relative "prepend" import mode, no ``__init__.py``),
so test modules import this file by its bare name.
"""

from __future__ import annotations

from typing import Any

TINY_TRAIN: dict[str, Any] = {
    "features": (4, 8),
    "blocks": (1, 1),
    "patch_size": (16, 16, 16),
    "n_phantoms": 2,
    "phantom_shapes": ((32, 48, 48),),
    "num_threads": 1,
    "device": "cpu",
}
"""Keyword arguments of a tiny :class:`nni_widget.train.TrainConfig`: a 2-stage network on 16^3
patches and two small phantoms, one CPU thread. Fast enough for sample, loss and training tests;
copy it (``{**TINY_TRAIN, ...}``) rather than modifying it."""
