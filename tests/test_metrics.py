"""Prometheus exposition: names, values from the daemon's state, the HTTP endpoint."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshctl.babel.parser import parse_line
from meshctl.config import parse_config
from meshctl.listen import parse_listen
from meshctl.node.daemon import Daemon
from meshctl.uplink.control import ROLE_PRIMARY, Message
from meshctl.uplink.policy import CAUSES
from meshctl.wireguard.backend import MemoryBackend
from meshctl.wireguard.state import Device
from tests.test_config import files, good  # noqa: F401 - fixture

LINES = [
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


def scrape(d: Daemon) -> dict[str, dict[tuple, float]]:
    """name -> {sorted labels: value}, through prometheus_client's own parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(d.metrics.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_names_follow_prometheus_conventions(files: dict) -> None:  # noqa: F811
    families = list(text_string_to_metric_families(daemon(files).metrics.exposition().decode()))
    assert families
    for f in families:
        assert f.name.startswith("meshctl_"), f.name
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
    d.counters.rejected["forged"] += 3
    d.babel.stats.reconnects = 2
    m = scrape(d)
    assert m["meshctl_control_rejected_datagrams_total"] == {(("reason", "forged"),): 3}
    assert m["meshctl_babel_reconnects_total"] == {(): 2}
    assert m["meshctl_babel_synced"] == {(): 0}


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
        assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head
        assert b"meshctl_babel_neighbour_cost" in body
        assert (await http(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert await http(port, b"garbage without an end") == b""  # closed, no crash
        assert (await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
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
