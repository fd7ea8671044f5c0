"""The mesh map page: self-contained, and drawn by a real (headless) Chromium."""

from __future__ import annotations

import os
import re

import pytest

from meshctl.gossip.table import Link, NodeInfo, UplinkChoice, mesh_graph
from meshctl.topology.export import mesh_json, mesh_to_netjson
from meshctl.topology.html import mesh_page
from tests import browser


def rid(row: int, col: int) -> str:
    return f"02:6d:63:6c:00:00:00:{(row - 1) * 4 + col:02x}"


def grid(evil_name: str = "r11") -> dict:
    """grid4x4 as gossip describes it (both ends report each of the 24 links); r11 also a client of r12 and r21."""
    nodes = []
    for r in range(1, 5):
        for c in range(1, 5):
            links = tuple(Link(rid(r + dr, c + dc), 96 + 10 * (dr + dc > 0), f"g{r}{c}-{r + dr}{c + dc}")
                          for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)) if 1 <= r + dr <= 4 and 1 <= c + dc <= 4)
            n = (r - 1) * 4 + c
            uplinks = (UplinkChoice("r12", rid(1, 2), "warm", True, "10.98.0.1"),
                       UplinkChoice("r21", rid(2, 1), "warm", False, "10.98.0.1")) if n == 1 else ()
            nodes.append(NodeInfo(evil_name if n == 1 else f"r{r}{c}", rid(r, c), links, (f"10.99.0.{n}/32",),
                                  uplinks=uplinks))
    return mesh_to_netjson(mesh_json(mesh_graph(nodes), rid(1, 1), "r11", "babeld-1.12.1"))


def test_the_page_is_self_contained() -> None:
    page = mesh_page(grid('</script><script>alert("x")</script>'))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loaded from elsewhere
    assert "connect-src 'none'" in page  # and the page may not fetch anything either
    assert page.count("</script>") == 3  # config, library, app: a node name cannot close one
    assert "cytoscape" in page and "Copyright (c) 2016-2026, The Cytoscape Consortium" in page  # MIT notice kept
    live = mesh_page(None, live="mesh.json")
    assert "connect-src 'self'" in live and '"live": "mesh.json"' in live


@pytest.mark.skipif(browser.chromium() is None and os.environ.get("CI") != "true",
                    reason="Debian's chromium is not installed (./bootstrap)")
def test_chromium_draws_every_node_and_link_and_the_uplink_plane(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "mesh.html"
    path.write_text(mesh_page(grid()))
    dom = browser.dump_dom(path.as_uri())
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))
    assert attrs["nodes"] == "16" and attrs["links"] == "24" and attrs["uplinks"] == "2", attrs
    assert attrs["error"] == ""
    assert len(attrs["linkset"].split(",")) == 24
    assert "16 nodes, 24 links; uplinks r11 \u2192 r12" in dom
