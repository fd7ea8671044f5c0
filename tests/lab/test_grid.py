"""The 4x4 grid: 16 babelds, 48 wireguard-go tunnels ends, routes up to 6 hops."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import jsonschema

from meshctl.lab.plan import GOSSIP_LIFETIME
from meshctl.node.sockets import query
from tests.conftest import static_path
from tests.lab.conftest import RunningLab, converged


def test_grid_converges_and_every_dump_is_complete(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("grid4x4")
    took = lab.wait_for(converged(lab), 120, "grid convergence")
    print(f"grid4x4 converged {took:.1f}s after lab up")
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}

    def dump_of(name: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "meshctl.cli", "topology", "dump", "--babel", lab.babel(name)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        result: dict = json.loads(out.stdout)
        return result

    for node in plan.nodes:
        # A neighbour's router id comes from the route it originates; converged means every best route is
        # in place, and the direct one from a neighbour may still be a periodic update away: wait for it.
        lab.wait_for(lambda name=node.name: None if all(n["router_id"] for n in dump_of(name)["neighbours"]
                                                        if n["reachable"]) else "a neighbour's own route not yet in",
                     30, f"{node.name}'s neighbours' router ids")
        dump = dump_of(node.name)
        neighbours = {n["router_id"] for n in dump["neighbours"] if n["reachable"]}
        assert neighbours == {plan.node(t.peer).router_id for t in node.tunnels}
        assert len(neighbours) in (2, 3, 4)
        # Every other router is known, each with an installed route to its prefixes.
        routers = {r["router_id"] for r in dump["routers"]}
        assert routers == ids - {node.router_id}
        installed = {r["prefix"] for r in dump["routes"] if r["installed"] and r["reachable"]}
        assert len(installed) == 2 * 15
    # Corner to corner: 6 hops through the mesh.
    far = plan.node("r44")
    ping = subprocess.run(
        ["ip", "netns", "exec", plan.node("r11").namespace, "ping", "-c", "2", "-W", "3", str(far.mesh4.ip)],
        capture_output=True, text=True, timeout=30,
    )
    assert ping.returncode == 0, ping.stdout
    trace = lab.model("r11").installed_route(far.mesh4.network)
    assert trace is not None and trace.metric >= 6 * 96


def mesh_view(lab: RunningLab, node: str) -> dict:
    return asyncio.run(query(lab.plan.node(node).control_socket, "mesh"))


def whole_grid(lab: RunningLab, expect_nodes: set[str], expect_links: int) -> Callable[[], str | None]:
    """A check: every running node's gossip view has exactly these routers, all reported, and these links."""

    def check() -> str | None:
        for node in lab.plan.nodes:
            if lab.plan.node(node.name).router_id not in expect_nodes:
                continue
            view = mesh_view(lab, node.name)
            nodes = {n["router_id"] for n in view["nodes"] if n["reported"]}
            links = [lk for lk in view["links"] if lk["cost"] is not None]
            if nodes != expect_nodes or len(links) != expect_links or len(view["nodes"]) != len(expect_nodes):
                return f"{node.name} sees {len(nodes)} reported of {len(view['nodes'])} nodes and {len(links)} links"
        return None

    return check


def test_gossip_gives_every_node_the_whole_grid_and_forgets_a_dead_node(
    start_lab: Callable[[str], RunningLab],
) -> None:
    """Issue #5: every node's dump shows all 16 nodes and all links; a node taken down leaves every view."""
    lab = start_lab("grid4x4")
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}
    took = lab.wait_for(whole_grid(lab, ids, 48), 60, "whole grid in every node's gossip view")
    print(f"gossip: every node sees 16 nodes and 48 directed links {took:.1f}s after lab up")
    # The same through the command line, in every format a tool would take.
    out = subprocess.run([sys.executable, "-m", "meshctl.cli", "topology", "dump", "--mesh", "--format", "netjson",
                          "--socket", plan.node("r44").control_socket], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    netjson = json.loads(out.stdout)
    with open(static_path("netjson-networkgraph.schema.json")) as f:
        jsonschema.validate(netjson, json.load(f))
    assert {n["id"] for n in netjson["nodes"]} == ids and len(netjson["links"]) == 24  # each link once, both costs
    from netdiff import NetJsonParser

    assert NetJsonParser(data=out.stdout).graph.number_of_edges() == 24  # undirected: the 24 grid links
    status = asyncio.run(query(plan.node("r22").control_socket, "status"))["gossip"]
    uptime = asyncio.run(query(plan.node("r22").control_socket, "status"))["uptime_s"]
    print(f"gossip traffic at r22: {status['bytes_out'] / uptime:.0f} B/s out, {status['bytes_in'] / uptime:.0f} B/s in "
          f"over {uptime:.0f} s (start-up included); rejected {status['rejected']}")

    # r22 dies (links down, processes killed): after its description's lifetime it is gone everywhere.
    lab.lab.fail_node("r22")
    gone = ids - {plan.node("r22").router_id}
    lifetime = GOSSIP_LIFETIME
    took = lab.wait_for(whole_grid(lab, gone, 48 - 2 * 4), lifetime + 30, "r22 gone from every view")
    print(f"r22 left every other node's view {took:.1f}s after it died (description lifetime {lifetime:g}s)")


FORGER = """
import socket, sys, time
sys.path[:0] = {path!r}
import msgpack
from nacl.signing import SigningKey as Ed25519PrivateKey
from meshctl.gossip.table import Description, NodeInfo, sign
from meshctl.gossip.signing import read_signing_key
r11 = read_signing_key({key!r}, "key").private
now = time.time()
node = NodeInfo("r11", "02:00:00:00:00:00:00:01")
good = sign(Description("r11", 5, now, 60.0, node), r11)
body, signature = msgpack.unpackb(good)
datagrams = [
    sign(Description("r11", 2**62, now, 60.0, node), Ed25519PrivateKey.generate()),  # forged: not r11's key
    sign(Description("mallory", 2**62, now, 60.0, NodeInfo("mallory", "x")), Ed25519PrivateKey.generate()),
    good,                                                      # replayed: r11 is far past seq 5
    good[:-20],                                                # truncated
    good + b"\\x00" * 9000,                                     # oversized
    msgpack.packb([body[:-1] + b"\\x00", signature]),           # tampered
    b"\\xc1" * 40,                                              # not msgpack
]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
through = ({address!r}, {port}, 0, socket.if_nametoindex({ifname!r}))  # from a Babel neighbour, over the tunnel
for d in datagrams:
    s.sendto(d, through)
"""
LOCAL = "import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'x' * 64, ('::1', {port}))"


def test_bad_gossip_datagrams_are_counted_and_change_nothing(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("grid4x4")
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}
    lab.wait_for(whole_grid(lab, ids, 48), 60, "whole grid in every node's gossip view")
    target = plan.node("r23")
    before = mesh_view(lab, "r23")
    tunnel = next(t for t in plan.node("r13").tunnels if t.peer == "r23")
    code = FORGER.format(path=sys.path, key=f"{plan.node('r11').run_dir}/gossip.key", port=51903,
                         address=str(tunnel.peer_ll), ifname=tunnel.ifname)
    subprocess.run(["ip", "netns", "exec", plan.node("r13").namespace, sys.executable, "-c", code], check=True, timeout=30)
    # Not from a Babel interface (here: loopback): dropped before it is read.
    subprocess.run(["ip", "netns", "exec", target.namespace, sys.executable, "-c", LOCAL.format(port=51903)], check=True,
                   timeout=30)
    want = {"bad-signature", "unknown-signer", "replay", "malformed", "oversized", "underlay"}

    def counted() -> str | None:
        rejected = asyncio.run(query(target.control_socket, "status"))["gossip"]["rejected"]
        return None if want <= set(rejected) else f"rejected so far: {rejected}"

    lab.wait_for(counted, 10, "every bad datagram counted")
    after = mesh_view(lab, "r23")

    def shape(view: dict) -> tuple:  # link costs move on their own (type tunnel: RTT); the mesh must not
        return view["nodes"], sorted((lk["from"], lk["to"], lk["interface"]) for lk in view["links"])

    assert shape(after) == shape(before)
    assert whole_grid(lab, ids, 48)() is None  # the daemon runs on, and so does everyone's view
