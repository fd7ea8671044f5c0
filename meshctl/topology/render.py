"""Drawing the mesh with Graphviz: the DOT export through ``dot -T``.

Graphviz does the layout; this module only runs it (the one subprocess) and
turns its failures into errors that say what to do.
"""

from __future__ import annotations

import shutil
import subprocess

from meshctl.errors import MeshctlError
from meshctl.topology.export import to_dot
from meshctl.topology.model import TopologyModel

IMAGE_FORMATS = ("svg", "png")


def render_image(model: TopologyModel, fmt: str, timeout: float = 60.0) -> bytes:
    """The mesh as an SVG or PNG image."""
    return render_dot(to_dot(model), fmt, timeout)


def render_dot(dot_text: str, fmt: str, timeout: float = 60.0) -> bytes:
    """A DOT graph as an SVG or PNG image."""
    if fmt not in IMAGE_FORMATS:
        raise MeshctlError(f"unknown image format {fmt!r}; choose one of {', '.join(IMAGE_FORMATS)}")
    dot = shutil.which("dot")
    if dot is None:
        raise MeshctlError("Graphviz's dot is not installed (apt-get install graphviz)")
    try:
        out = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MeshctlError(f"dot took longer than {timeout:g} s") from None
    if out.returncode != 0:
        raise MeshctlError(f"dot failed: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout
