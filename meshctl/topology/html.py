"""The mesh map as one self-contained HTML page (Cytoscape.js, vendored).

``meshctl topology render --mesh -o mesh.html`` writes the page with the mesh
inside; the daemon serves the same page at ``/mesh`` with no data, and the
page then polls ``mesh.json`` beside it.  Either way the page needs no network:
the graph library and the drawing code are inline, and its
Content-Security-Policy allows nothing else to load.

Cytoscape.js (MIT, no dependencies, one file) is vendored from npm under
``static/`` with its licence; ``static/README.md`` says how to refresh it.
Pure: reads package data, returns text.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

#: Seconds between two refreshes of a live page.
REFRESH_INTERVAL = 2.0

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src {connect}")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; font-family: sans-serif; }}
header {{ position: fixed; top: 0; left: 0; right: 0; padding: 6px 10px; background: #f7f7f7;
  border-bottom: 1px solid #ccc; font-size: 13px; z-index: 2; }}
#map {{ position: absolute; top: 32px; bottom: 0; left: 0; right: 0; }}
#legend span {{ display: inline-block; margin-left: 12px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; border: 1px solid #444; vertical-align: middle; }}
#details {{ position: fixed; right: 8px; top: 40px; max-width: 40%; max-height: 60%; overflow: auto; z-index: 3;
  background: #fff; border: 1px solid #999; padding: 6px; font: 11px monospace; white-space: pre; }}
</style>
</head>
<body>
<header><span id="summary">loading…</span>
<span id="legend">
<span><i class="swatch" style="background:#9ecae1"></i> gateway</span>
<span><i class="swatch" style="background:#fdd0a2"></i> client</span>
<span><i class="swatch" style="background:#d9d9d9"></i> upstream</span>
<span>— Babel link (cost each way)</span>
<span style="color:#08519c">- - uplink (bold: chosen)</span>
</span></header>
<div id="map"></div>
<pre id="details" hidden></pre>
<script id="mesh-config" type="application/json">{config}</script>
<script>{library}</script>
<script>{app}</script>
</body>
</html>
"""


@cache
def _static(name: str) -> str:
    return resources.files("meshctl.topology").joinpath("static", name).read_text(encoding="utf-8")


def _inline_json(data: Any) -> str:
    """JSON that cannot close the <script> element it sits in."""
    return json.dumps(data, sort_keys=True).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def mesh_page(graph: dict[str, Any] | None, live: str | None = None, interval: float = REFRESH_INTERVAL) -> str:
    """The map page: ``graph`` (a NetworkGraph) drawn at once, and/or polled from ``live`` (a relative URL)."""
    label = graph.get("label", "") if graph else ""
    title = f"meshctl: mesh {label}".strip() if graph else "meshctl: live mesh"
    config = {"graph": graph, "live": live, "interval": interval}
    return _PAGE.format(
        csp=_CSP.format(connect="'self'" if live else "'none'"),
        title=html.escape(title),
        config=_inline_json(config),
        library=_static("cytoscape.min.js"),
        app=_static("meshmap.js"),
    )
