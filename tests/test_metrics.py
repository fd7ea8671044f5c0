"""Prometheus exposition: names, values from the daemon's state, the HTTP endpoint."""

from __future__ import annotations

import asyncio
import gzip
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from meshctl.babel.parser import parse_line
from meshctl.config import parse_config
from meshctl.gossip.table import REJECT_REASONS, GossipTable
from meshctl.listen import parse_listen
from meshctl.node.daemon import Daemon
from meshctl.node.metrics import CONTROL_REASONS
from meshctl.uplink.control import ROLE_PRIMARY, Message
from meshctl.uplink.policy import CAUSES
from meshctl.wireguard.backend import MemoryBackend
from meshctl.wireguard.state import Device, Peer
from tests.test_config import GW1, GW2, files, good  # noqa: F401 - fixture

LINES = [
    "add interface wg1 up true ipv6 fe80::1",
    "add interface wg2 up true ipv6 fe80::1",
    "add interface wg3 up true ipv6 fe80::1",
    "add neighbour 1 address fe80::2 if wg1 reach fff0 ureach 0000 rxcost 96 txcost 96 rtt 1.500 rttcost 0 cost 96",
    "add neighbour 2 address fe80::3 if wg2 reach ff00 ureach 0000 rxcost 160 txcost 96 cost 160",
    "add route 1 prefix 10.99.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
    "metric 96 refmetric 0 via fe80::2 if wg1",
    "add route 2 prefix 10.99.0.9/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:03 "
    "metric 160 refmetric 0 via fe80::3 if wg2",
]


def daemon(files: dict) -> Daemon:  # noqa: F811
    d = Daemon(parse_config(good(files), "node.toml"), backend=MemoryBackend())
    for line in LINES:
        d.view.model.apply(parse_line(line))
    return d


def exposition(d: Daemon) -> str:
    return asyncio.run(d.metrics.exposition()).body.decode()


def scrape(d: Daemon) -> dict[str, dict[tuple, float]]:
    """name -> {sorted labels: value}, through prometheus_client's own parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(exposition(d)):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_names_follow_prometheus_conventions(files: dict) -> None:  # noqa: F811
    families = list(text_string_to_metric_families(exposition(daemon(files))))
    assert families
    for f in families:
        assert f.name.startswith(("meshctl_", "wireguard_", "process_")), f.name
        assert f.documentation, f.name
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
        assert not f.name.endswith(("_ms", "_milliseconds")), "base units: seconds"


def test_neighbours_and_candidates(files: dict) -> None:  # noqa: F811
    m = scrape(daemon(files))
    n1 = (("address", "fe80::2"), ("interface", "wg1"))
    n2 = (("address", "fe80::3"), ("interface", "wg2"))
    assert m["meshctl_babel_neighbour_cost"] == {n1: 96, n2: 160}
    assert m["meshctl_babel_neighbour_rxcost"][n2] == 160 and m["meshctl_babel_neighbour_txcost"][n2] == 96
    assert m["meshctl_babel_neighbour_rtt_seconds"] == {n1: pytest.approx(0.0015)}  # none for n2: no rtt
    assert m["meshctl_babel_neighbour_reachability_ratio"] == {n1: 12 / 16, n2: 8 / 16}
    g1 = (("family", "ipv4"), ("gateway", "gw1"), ("uplink", "wgup"))
    g2 = (("family", "ipv4"), ("gateway", "gw2"), ("uplink", "wgup"))
    assert m["meshctl_uplink_candidate_metric"] == {g1: 96, g2: 160}  # gw2 ranked by its router id
    assert m["meshctl_uplink_candidate_chosen"] == {g1: 0, g2: 0}
    assert m["meshctl_uplink_candidate_up"] == {g1: 0, g2: 0}
    assert m["meshctl_uplink_candidate_upstream_metric"] == {g1: 65535, g2: 65535}  # not reported yet
    assert m["meshctl_uplink_candidate_check_ok"] == {g1: 1, g2: 1}
    assert "meshctl_uplink_candidate_handshake_age_seconds" not in m  # never handshaked: no sample, not 0
    switches = m["meshctl_uplink_switches_total"]
    assert set(switches.values()) == {0} and len(switches) == len(CAUSES)  # every cause, from the start
    assert m["meshctl_uplink_reaction_seconds_count"] == {(("uplink", "wgup"),): 0}


def test_a_switch_moves_the_counter_the_gauge_and_the_histogram(files: dict) -> None:  # noqa: F811
    d = daemon(files)
    up = d.uplinks[0]
    # The collector reads the controller's clock as time.monotonic(); ack "now".
    import time

    now = time.monotonic()
    up.ctl.on_device(Device("wgup"), now)
    for gw, probe in up.ctl.probes_to_send(now, 0.0):
        up.ctl.on_ack(gw.name, Message("ack", gw.name, probe.seq, 0.0, (ROLE_PRIMARY, 0), (), (0,)), now)
    up.ctl.step(d.view.model, True, None, now, time.time())
    done = up.ctl.written(True, now)
    assert [x.switch.cause for x in done] == ["initial"]
    d.metrics.observe_reaction("wgup", 0.003)
    m = scrape(d)
    g1 = (("family", "ipv4"), ("gateway", "gw1"), ("uplink", "wgup"))
    assert m["meshctl_uplink_candidate_chosen"][g1] == 1
    assert m["meshctl_uplink_switches_total"][(("cause", "initial"), ("uplink", "wgup"))] == 1
    assert m["meshctl_uplink_reaction_seconds_count"][(("uplink", "wgup"),)] == 1
    assert m["meshctl_uplink_reaction_seconds_bucket"][(("le", "0.005"), ("uplink", "wgup"))] == 1
    assert m["meshctl_uplink_reaction_seconds_bucket"][(("le", "0.002"), ("uplink", "wgup"))] == 0


def test_rejected_datagrams_and_babel_counters(files: dict) -> None:  # noqa: F811
    d = daemon(files)
    d.counters.rejected["bad-mac"] += 3
    d.counters.rejected["brand-new"] += 1  # a reason nobody listed yet still shows
    d.babel.stats.reconnects = 2
    m = scrape(d)
    rejected = m["meshctl_control_rejected_datagrams_total"]
    assert rejected[(("reason", "bad-mac"),)] == 3 and rejected[(("reason", "brand-new"),)] == 1
    assert {dict(k)["reason"] for k, v in rejected.items() if v == 0} == set(CONTROL_REASONS) - {"bad-mac"}
    assert m["meshctl_babel_reconnects_total"] == {(): 2}
    assert m["meshctl_babel_synced"] == {(): 0}


def test_every_reason_counter_starts_at_zero(files: dict) -> None:  # noqa: F811
    """increase(...{reason="bad-signature"}[5m]) must see the very first forged datagram: the series exists before it."""
    d = daemon(files)
    d.gossip = SimpleNamespace(table=GossipTable("client", {}), bytes_in=0, bytes_out=0)  # type: ignore[assignment]
    m = scrape(d)
    gossip = m["meshctl_gossip_rejected_datagrams_total"]
    assert {dict(k)["reason"] for k in gossip} == set(REJECT_REASONS) and set(gossip.values()) == {0}
    control = m["meshctl_control_rejected_datagrams_total"]
    assert {dict(k)["reason"] for k in control} == set(CONTROL_REASONS) and set(control.values()) == {0}


def test_the_known_reasons_are_every_reason_the_code_counts() -> None:
    """Read from the source, so a reason added later without its zero start fails here."""
    root = Path(__file__).resolve().parent.parent / "meshctl"
    control = "".join((root / "uplink" / name).read_text() for name in ("control.py", "client_runner.py", "gateway_runner.py"))
    found = set(re.findall(r'ControlError\("([a-z-]+)"', control)) | set(re.findall(r'rejected\["([a-z-]+)"\]', control))
    assert found and found <= set(CONTROL_REASONS)
    gossip = (root / "gossip" / "table.py").read_text()
    found = set(re.findall(r'GossipError\("([a-z-]+)"', gossip)) | set(re.findall(r'rejected\["([a-z-]+)"', gossip))
    found |= {"duplicate", "replay"}  # counted through one conditional expression
    assert found <= set(REJECT_REASONS)


def test_babeld_tables_per_interface(files: dict) -> None:  # noqa: F811
    m = scrape(daemon(files))
    assert m["meshctl_babel_routes"] == {(("interface", "wg1"),): 1, (("interface", "wg2"),): 1, (("interface", "wg3"),): 0}
    assert m["meshctl_babel_installed_routes"][(("interface", "wg3"),)] == 0
    assert m["meshctl_babel_neighbours"] == {(("interface", "wg1"),): 1, (("interface", "wg2"),): 1,
                                             (("interface", "wg3"),): 0}
    assert m["meshctl_babel_exported_routes"] == {(): 0}


def test_per_peer_wireguard_bytes_and_handshake_named_like_the_wireguard_exporter(files: dict) -> None:  # noqa: F811
    d = daemon(files)
    d.uplinks[0].device = Device("wgup", peers=(
        Peer(GW1.public, rx_bytes=1200, tx_bytes=3400, last_handshake=1_700_000_000.0),
        Peer(GW2.public),
    ))
    m = scrape(d)
    gw1 = (("friendly_name", "gw1"), ("interface", "wgup"), ("public_key", GW1.public))
    gw2 = (("friendly_name", "gw2"), ("interface", "wgup"), ("public_key", GW2.public))
    assert m["wireguard_received_bytes_total"] == {gw1: 1200, gw2: 0}
    assert m["wireguard_sent_bytes_total"] == {gw1: 3400, gw2: 0}
    assert m["wireguard_latest_handshake_seconds"] == {gw1: 1_700_000_000.0, gw2: 0}


def test_process_metrics(files: dict) -> None:  # noqa: F811
    m = scrape(daemon(files))
    assert m["process_open_fds"][()] > 0 and m["process_max_fds"][()] > 0
    assert m["process_resident_memory_bytes"][()] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    writer.write_eof()  # the server must not wait for the rest of a broken request
    data = await reader.read()
    writer.close()
    return data


async def test_http_endpoint(files: dict) -> None:  # noqa: F811
    d = daemon(files)
    port = free_port()
    server = await d.metrics.serve(f"127.0.0.1:{port}")
    try:
        ok = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=" in head
        assert b"meshctl_babel_neighbour_cost" in body
        assert (await http(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert await http(port, b"garbage without an end") == b""  # closed, no crash
        assert (await http(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        head = await http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
        assert (await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        server.close()
        await server.wait_closed()


async def test_openmetrics_with_gzip_and_name_filter(files: dict) -> None:  # noqa: F811
    """prometheus_client's own exposition: what a Prometheus 2.x/3.x scrape asks for, it gets."""
    d = daemon(files)
    d.uplinks[0].device = Device("wgup", peers=(Peer(GW1.public, rx_bytes=5, tx_bytes=7),))
    port = free_port()
    server = await d.metrics.serve(f"127.0.0.1:{port}")
    try:
        reply = await http(port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n"
                                 b"Accept-Encoding: gzip\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"Content-Type: application/openmetrics-text; version=1.0.0" in head
        assert b"Content-Encoding: gzip" in head
        text = gzip.decompress(body).decode()
        assert text.endswith("# EOF\n")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in openmetrics_families(text) for s in f.samples}
        gw1 = (("friendly_name", "gw1"), ("interface", "wgup"), ("public_key", GW1.public))
        assert samples[("wireguard_received_bytes_total", gw1)] == 5
        assert samples[("wireguard_sent_bytes_total", gw1)] == 7
        assert samples[("meshctl_control_rejected_datagrams_total", (("reason", "bad-mac"),))] == 0
        assert samples[("meshctl_uplink_switches_total", (("cause", "down"), ("uplink", "wgup")))] == 0
        # name[] filtering, as prometheus_client's own server does it
        reply = await http(port, b"GET /metrics?name[]=meshctl_babel_synced HTTP/1.1\r\n\r\n")
        body = reply.partition(b"\r\n\r\n")[2].decode()
        assert [f.name for f in text_string_to_metric_families(body)] == ["meshctl_babel_synced"]
    finally:
        server.close()
        await server.wait_closed()


async def test_mesh_page_and_its_data(files: dict) -> None:  # noqa: F811
    d = daemon(files)
    port = free_port()
    server = await d.metrics.serve(f"127.0.0.1:{port}")
    try:
        head, _, page = (await http(port, b"GET /mesh HTTP/1.1\r\n\r\n")).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head and b"connect-src 'self'" in head
        assert b"cytoscape" in page and b'"live": "mesh.json"' in page
        head, _, body = (await http(port, b"GET /mesh.json HTTP/1.1\r\n\r\n")).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b'"type": "NetworkGraph"' in body
    finally:
        server.close()
        await server.wait_closed()


async def test_the_listener_holds_few_connections_and_little_time() -> None:
    """Idle connections beyond the cap cost no descriptor, and each one is cut off at its deadline."""
    from meshctl.node.httpd import BoundedServer, Response

    async def answer(request: object) -> Response:
        return Response(200, b"ok")

    server = BoundedServer(answer, max_connections=4, deadline=0.5)
    await server.start("127.0.0.1", 0)
    idle = []
    try:
        for _ in range(30):  # idle: connect, say nothing
            idle.append(await asyncio.open_connection("127.0.0.1", server.port))
        await asyncio.sleep(0.2)
        assert server.open_connections == 4  # the others wait in the kernel's backlog, or were refused by it
        await asyncio.sleep(2.0)  # every held connection has met its deadline, and more were taken in
        assert server.cut_off >= 8 and server.open_connections <= 4
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.6)
        reply = await http(server.port, b"GET / HTTP/1.1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("text", ["9474", "::1:9474", "localhost:9474", "[::1]:0", "[::1]:x", "[::1:9474"])
def test_listen_refusals(text: str) -> None:
    with pytest.raises(ValueError, match="ADDRESS:PORT"):
        parse_listen(text)


def test_listen_forms() -> None:
    assert parse_listen("[::1]:9474") == ("::1", 9474)
    assert parse_listen("127.0.0.1:9") == ("127.0.0.1", 9)


def test_uplink_choices_for_gossip_and_the_map(files: dict) -> None:  # noqa: F811
    """What the client tells the mesh about its gateways: names, router ids, state, choice, its own address."""
    from meshctl.node.meshmap import uplink_choices

    d = daemon(files)
    choices = {c.gateway: c for c in uplink_choices(d)}
    assert set(choices) == {"gw1", "gw2"}
    assert choices["gw1"].router_id == "02:00:00:00:00:00:00:02"  # from the route to its mesh address
    assert choices["gw2"].router_id == "02:00:00:00:00:00:00:03"  # from the config
    assert {c.address for c in choices.values()} == {"10.98.0.1"}
    assert not any(c.chosen for c in choices.values()) and all(c.state for c in choices.values())
