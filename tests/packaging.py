"""Build the sdist and the wheel once per test session, for the packaging tests (unit and lab)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "babelwire"


def build(outdir: Path) -> tuple[Path, Path]:
    """``python -m build`` (sdist, then the wheel from the sdist) into ``outdir``: (sdist, wheel)."""
    out = subprocess.run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (sdist,) = outdir.glob(f"{DISTRIBUTION}-*.tar.gz")
    (wheel,) = outdir.glob(f"{DISTRIBUTION}-*-py3-none-any.whl")
    return sdist, wheel
