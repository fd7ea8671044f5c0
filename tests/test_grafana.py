"""contrib/grafana-meshctl.json: valid JSON, and every expression names a metric the daemon exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from meshctl.gossip.table import GossipTable
from meshctl.wireguard.backend import MemoryBackend
from meshctl.wireguard.state import Device, Peer
from tests.test_config import GW1, files  # noqa: F401 - fixture
from tests.test_metrics import daemon, exposition

DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana-meshctl.json"
OURS = re.compile(r"\b((?:meshctl|wireguard|process)_[a-z0-9_]+)")


def expressions(dashboard: dict) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panels (rows included), variables, annotations."""
    def panels(items: list) -> Iterator[dict]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    for annotation in dashboard["annotations"]["list"]:
        yield annotation["expr"]


def exported(files: dict) -> set[str]:  # noqa: F811
    """Every sample name a daemon with uplinks, a gateway, gossip and WireGuard peers exports."""
    d = daemon(files)
    d.uplinks[0].device = Device("wgup", peers=(Peer(GW1.public, rx_bytes=1, tx_bytes=1, last_handshake=1.0),))
    d.gossip = SimpleNamespace(table=GossipTable("client", {}), bytes_in=0, bytes_out=0)  # type: ignore[assignment]
    d.gateway = SimpleNamespace(clients=["c1"], roles={}, config=SimpleNamespace(interface="wggw"),  # type: ignore[assignment]
                                backend=MemoryBackend())
    names = set()
    for family in text_string_to_metric_families(exposition(d)):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_dashboard_is_valid_json_for_grafana() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "meshctl" and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_expression_names_an_exported_metric(files: dict) -> None:  # noqa: F811
    names = exported(files)
    used = set()
    for expr in expressions(json.loads(DASHBOARD.read_text())):
        found = OURS.findall(expr)
        assert found, f"names no meshctl metric: {expr}"
        missing = [n for n in found if n not in names]
        assert not missing, f"{expr}: not exported: {missing}"
        used.update(found)
    # The families a Grafana author asks for first are all on the dashboard.
    assert {"wireguard_received_bytes_total", "wireguard_sent_bytes_total", "wireguard_latest_handshake_seconds",
            "meshctl_uplink_candidate_chosen", "meshctl_babel_routes", "process_open_fds"} <= used
