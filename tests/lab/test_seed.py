"""The seed mesh (client, two gateways, upstream) with real babeld and wireguard-go."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Callable

import jsonschema

from meshctl.babel.connection import Backoff, Client
from meshctl.babel.endpoint import parse_endpoint
from meshctl.topology.model import MeshView
from tests.conftest import static_path
from tests.lab.conftest import TOPOLOGIES, RunningLab, converged, unique_tag


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True, timeout=120)


def test_seed_dump_shows_neighbours_and_routes_on_every_node(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("seed")
    took = lab.wait_for(converged(lab), 60, "seed convergence")
    print(f"seed converged {took:.1f}s after lab up")
    plan = lab.plan
    for node in plan.nodes:
        out = cli("topology", "dump", "--babel", lab.babel(node.name), "--format", "json")
        assert out.returncode == 0, out.stderr
        dump = json.loads(out.stdout)
        assert dump["router_id"] == node.router_id
        # Neighbours: one per tunnel, named by the peer's router id.
        got = {(n["interface"], n["router_id"]) for n in dump["neighbours"] if n["reachable"]}
        want = {(t.ifname, plan.node(t.peer).router_id) for t in node.tunnels}
        assert got == want
        # A route to every other node's prefixes, installed.
        installed = {r["prefix"] for r in dump["routes"] if r["installed"] and r["reachable"]}
        for other in plan.nodes:
            if other is not node:
                assert {str(p) for p in other.prefixes} <= installed, (node.name, other.name)
        # The node's own prefixes are exported, the underlay never is.
        exported = {x["prefix"] for x in dump["exported"]}
        served = {str(a.network) for c in node.served for a in c.addresses}  # a chosen gateway announces its client
        own = {f"{a.ip}/{a.max_prefixlen}" for a in node.uplink.addresses} if node.uplink else set()  # the way back
        assert exported - served == ({str(p) for p in node.prefixes} | {f"{a.ip}/{a.max_prefixlen}" for a in node.announce}
                                     | own)
        assert not any(p.startswith("10.250.") for p in exported)
    # Traffic crosses the mesh: the client reaches the upstream's announced prefix.
    ping = subprocess.run(
        ["ip", "netns", "exec", plan.node("client").namespace, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.200.0.1"],
        capture_output=True, text=True, timeout=30,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_seed_netjson_dot_graphml_and_drawings_from_a_live_node(
    start_lab: Callable[[str], RunningLab], tmp_path
) -> None:  # noqa: ANN001
    lab = start_lab("seed")
    lab.wait_for(converged(lab), 60, "seed convergence")
    out = cli("topology", "dump", "--babel", lab.babel("client"), "--format", "netjson")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    with open(static_path("netjson-networkgraph.schema.json")) as f:
        jsonschema.validate(data, json.load(f))
    assert {link["target"] for link in data["links"]} == {lab.plan.node("gw1").router_id, lab.plan.node("gw2").router_id}
    dot = cli("topology", "dump", "--babel", lab.babel("client"), "--format", "dot")
    # One solid edge per Babel link (client-gw1, client-gw2); the upstream, reached through gw1, hangs off it dotted.
    solid = [line for line in dot.stdout.splitlines() if " -- " in line and "dotted" not in line]
    assert dot.returncode == 0 and len(solid) == 2, dot.stdout
    graphml = cli("topology", "dump", "--babel", lab.babel("client"), "--format", "graphml")
    assert graphml.returncode == 0 and graphml.stdout.count("<edge ") == 2
    svg, png = tmp_path / "mesh.svg", tmp_path / "mesh.png"
    for path in (svg, png):
        out = cli("topology", "render", "--babel", lab.babel("client"), "-o", str(path))
        assert out.returncode == 0, out.stderr
    # The drawing has what the DOT has: two links and the upstream's dotted edge.
    assert svg.read_text().count("<g id=\"edge") == 3 and lab.plan.node("gw1").router_id in svg.read_text()
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_client_resyncs_after_babeld_restart_without_stale_entries(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("seed")
    lab.wait_for(converged(lab), 60, "seed convergence")
    client = lab.plan.node("client")
    to_gw2 = next(t.ifname for t in client.tunnels if t.peer == "gw2")

    async def scenario() -> None:
        view = MeshView()
        babel = Client(parse_endpoint(lab.babel("client")), view, Backoff(initial=0.05, maximum=0.5))
        task = asyncio.create_task(babel.run())

        async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
            for _ in range(int(timeout / 0.05)):
                if cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out: {what}")

        try:
            await until(lambda: view.synced, 10, "first sync")
            assert any(k[1] == to_gw2 for k in view.model.neighbours)
            assert any(r.interface == to_gw2 for r in view.model.routes.values())
            await asyncio.to_thread(lab.lab.stop_babeld, "client")
            await until(lambda: not view.synced, 10, "client notices babeld is gone")
            # While babeld is down, the tunnel to gw2 goes away: after the restart
            # nothing learnt over it may survive in the model.
            subprocess.run(["ip", "-n", client.namespace, "link", "set", to_gw2, "down"], check=True)
            await asyncio.to_thread(lab.lab.start_babeld, "client")
            await until(lambda: view.synced and view.syncs >= 2, 20, "resync after restart")
            await until(lambda: any(n.reachable for n in view.model.neighbours.values()), 20, "gw1 adjacency back")
            assert babel.stats.reconnects >= 1
            assert not any(k[1] == to_gw2 and n.reachable for k, n in view.model.neighbours.items())
            assert not any(r.interface == to_gw2 and r.reachable for r in view.model.routes.values())
            route = view.model.installed_route(ipaddress.ip_network("10.200.0.0/24"))
            await until(lambda: view.model.installed_route(ipaddress.ip_network("10.200.0.0/24")) is not None,
                        30, "route to upstream via gw1")
            route = view.model.installed_route(ipaddress.ip_network("10.200.0.0/24"))
            assert route is not None and route.interface != to_gw2
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_cli_lab_up_refuses_a_taken_name_and_down_cleans_everything() -> None:
    tag = unique_tag()
    seed = os.path.join(TOPOLOGIES, "seed.toml")
    try:
        up = cli("lab", "up", seed, "--tag", tag)
        assert up.returncode == 0, up.stderr
        assert "[4/4] upstream" in up.stdout
        again = cli("lab", "up", seed, "--tag", tag)
        assert again.returncode == 3
        assert "already in use" in again.stderr and len(again.stderr.strip().splitlines()) == 1
        status = cli("lab", "status", seed, "--tag", tag, "--json")
        assert json.loads(status.stdout)["status"] == "up"  # the refused second up touched nothing
        pids = [p["pid"] for p in json.loads(status.stdout)["processes"]]
    finally:
        down = cli("lab", "down", seed, "--tag", tag)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(tag, pids)


def test_failed_up_removes_what_it_built(tmp_path) -> None:  # noqa: ANN001
    topo = tmp_path / "broken.toml"
    with open(os.path.join(TOPOLOGIES, "triangle.toml")) as f:
        text = f.read()
    # babeld refuses an unknown directive and exits at start: up fails halfway.
    topo.write_text(text.replace('tag = "tri"', 'tag = "tri"\n\n[babel]\nextra = ["no-such-directive 1"]'))
    tag = unique_tag()
    up = cli("lab", "up", str(topo), "--tag", tag)
    try:
        assert up.returncode == 3, up.stdout + up.stderr
        assert "exited at start" in up.stderr
        assert "removing what was built" in up.stdout
        assert_nothing_left(tag, [])
    finally:
        cli("lab", "down", str(topo), "--tag", tag)


def assert_nothing_left(tag: str, pids: list[int]) -> None:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{tag}-" not in netns
    leftovers = [s for s in os.listdir("/var/run/wireguard")] if os.path.isdir("/var/run/wireguard") else []
    assert not [s for s in leftovers if s.startswith(tag)]
    assert not os.path.exists(f"/run/meshctl/lab/{tag}")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z"  # at most an unreaped zombie
        except FileNotFoundError:
            pass
