"""The repository passes its own lint rules (``[tool.ruff]`` in pyproject.toml).

Unused imports, unused loop variables and the like crept into the notebooks while nothing ran the
linter; this keeps the code, the tools and the notebooks clean on every CI run. Files git ignores
(the CI's virtual environment, ``out/``) are not linted: ruff honours ``.gitignore``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"ruff check found problems (fix them, or run `ruff check --fix .`):\n{result.stdout}{result.stderr}"
    )
