"""Gossip merge on a simulated 1,000-node mesh: time and memory, beside a baseline.

Every node of a 1,000-node mesh (a 40 x 25 grid: up to 4 links each) signs
its description; one table then takes all 1,000 datagrams (verify the
Ed25519 signature, check the sequence, keep) and builds the whole-mesh graph.
The baseline, measured in the same run, only unpacks the same datagrams with
msgpack: the least any receiver must do.  Signature checks are the expected
cost (Ed25519 verify is ~40 us in libsodium), so the ratio is large by design.
"""

from __future__ import annotations

import msgpack
from nacl.signing import SigningKey as Ed25519PrivateKey

from bench.model_bench import measure
from meshctl.gossip.table import Description, GossipTable, Link, NodeInfo, mesh_graph, sign

ROWS, COLS = 40, 25
NODES = ROWS * COLS
WALL = 1_800_000_000.0


def simulated_mesh() -> tuple[dict, list[bytes]]:
    names = [f"n{i}" for i in range(NODES)]
    keys = {n: Ed25519PrivateKey.generate() for n in names}
    datagrams = []
    for i, name in enumerate(names):
        r, c = divmod(i, COLS)
        near = [(r + dr, c + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= r + dr < ROWS and 0 <= c + dc < COLS]
        links = tuple(Link(f"rid-n{a * COLS + b}", 96, f"wg{a * COLS + b}") for a, b in near)
        node = NodeInfo(name, f"rid-{name}", links, (f"10.{i >> 8}.{i & 0xFF}.0/24",), ("k" * 44,), ("192.0.2.1:51820",))
        datagrams.append(sign(Description(name, 1, WALL, 600.0, node), keys[name]))
    trusted = {n: k.verify_key for n, k in keys.items()}
    return trusted, datagrams


def run() -> list[tuple[str, ...]]:
    trusted, datagrams = simulated_mesh()
    size = sum(len(d) for d in datagrams)

    def baseline() -> list:
        return [msgpack.unpackb(msgpack.unpackb(d)[0]) for d in datagrams]

    def merge() -> GossipTable:
        table = GossipTable("observer", trusted)
        for d in datagrams:
            table.receive(d, 0.0, WALL)
        assert len(table.entries) == NODES
        return table

    table = merge()

    def graph() -> object:
        return mesh_graph(d.node for d in table.descriptions())

    base_t, base_m = measure(baseline)
    merge_t, merge_m = measure(merge)
    graph_t, graph_m = measure(graph)
    g = graph()
    rows = [
        ("unpack only (baseline)", f"{NODES}", f"{base_t * 1000:.1f}", f"{base_m / 2**20:.1f}"),
        ("verify + merge into the table", f"{NODES}", f"{merge_t * 1000:.1f}", f"{merge_m / 2**20:.1f}"),
        (f"whole-mesh graph ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)", f"{NODES}",
         f"{graph_t * 1000:.1f}", f"{graph_m / 2**20:.1f}"),
        ("ratio merge/baseline", "", f"{merge_t / base_t:.1f}x", ""),
        ("datagrams", f"{NODES}", f"{size / NODES:.0f} B each", ""),
    ]
    return rows


def grid_run(settle: float = 10.0) -> list[tuple[str, ...]]:
    """The 4x4 grid lab with meshctl on every node: time to a whole view everywhere, and steady traffic."""
    import asyncio
    import os
    import secrets
    import time

    from meshctl.lab.check import wait_until
    from meshctl.lab.plan import GOSSIP_LIFETIME, make_plan
    from meshctl.lab.runner import Lab
    from meshctl.lab.spec import load_lab
    from meshctl.node.sockets import query

    spec = load_lab(os.path.join(os.path.dirname(__file__), "..", "topologies", "grid4x4.toml"))
    lab = Lab(make_plan(spec, "g" + secrets.token_hex(2)))
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}
    try:
        lab.up()
        start = time.monotonic()

        def whole() -> str | None:
            for n in plan.nodes:
                try:
                    view = asyncio.run(query(n.control_socket, "mesh"))
                except Exception as exc:  # a daemon still starting
                    return f"{n.name}: {exc}"
                if {x["router_id"] for x in view["nodes"] if x["reported"]} != ids or len(view["links"]) != 48:
                    return f"{n.name} incomplete"
            return None

        wait_until(whole, 60, "whole grid everywhere", poll=0.1)
        converged = time.monotonic() - start

        def sent() -> list[int]:
            return [asyncio.run(query(n.control_socket, "status"))["gossip"]["bytes_out"] for n in plan.nodes]

        before = sent()
        time.sleep(settle)
        rates = sorted((b - a) / settle for a, b in zip(before, sent(), strict=True))
    finally:
        lab.down()
    return [
        ("grid4x4: whole mesh in every node's view after lab up", f"{converged:.2f} s", ""),
        (f"steady gossip out per node over {settle:g} s (lifetime {GOSSIP_LIFETIME:g} s)",
         f"median {rates[len(rates) // 2]:.0f} B/s", f"max {rates[-1]:.0f} B/s"),
    ]


async def _seen_everywhere(sockets: list[str], router_id: str, prefix: str, present: bool) -> bool:
    """Does every daemon's mesh view show (or no longer show) ``prefix`` at ``router_id``?"""
    import asyncio

    from meshctl.node.sockets import query

    async def one(path: str) -> bool:
        try:
            view = await query(path, "mesh")
        except Exception:  # a daemon busy or restarting: not seen yet
            return False
        node = next((x for x in view["nodes"] if x["router_id"] == router_id), None)
        return node is not None and (prefix in node["prefixes"]) == present

    return all(await asyncio.gather(*(one(p) for p in sockets)))


def change_run(runs: int = 5, settle: float = 10.0, origin: str = "r11") -> list[tuple[str, ...]]:
    """Gossip convergence on a change in grid4x4: a prefix added at a corner node, until every node's view has it.

    The prefix is a kernel route in the protocol babeld redistributes (152), so the time counts babeld
    noticing it, the daemon at the corner reading it, describing itself again and the flood across the
    grid's 6 hops; then the same for its removal.  Every node is polled every 20 ms.
    """
    import asyncio
    import os
    import secrets
    import subprocess
    import time

    from meshctl.lab.check import check_converged, wait_until
    from meshctl.lab.plan import make_plan
    from meshctl.lab.runner import Lab
    from meshctl.lab.spec import load_lab

    spec = load_lab(os.path.join(os.path.dirname(__file__), "..", "topologies", "grid4x4.toml"))
    lab = Lab(make_plan(spec, "c" + secrets.token_hex(2)))
    plan = lab.plan
    node = plan.node(origin)
    sockets = [n.control_socket for n in plan.nodes if n.name != origin]
    added: list[float] = []
    removed: list[float] = []

    def until(prefix: str, present: bool) -> float:
        start = time.monotonic()
        while not asyncio.run(_seen_everywhere(sockets, node.router_id, prefix, present)):
            if time.monotonic() - start > 60:
                raise RuntimeError(f"{prefix} {'not seen' if present else 'still seen'} everywhere after 60 s")
            time.sleep(0.02)
        return time.monotonic() - start

    try:
        lab.up()
        wait_until(lambda: check_converged(plan), 120, "grid4x4 convergence")
        time.sleep(settle)
        for i in range(runs):
            prefix = f"10.123.{i}.0/24"
            route = ["ip", "netns", "exec", node.namespace, "ip", "route"]
            subprocess.run([*route, "add", prefix, "dev", "lo", "proto", "152"], check=True)
            added.append(until(prefix, True))
            time.sleep(1.0)
            subprocess.run([*route, "del", prefix, "dev", "lo", "proto", "152"], check=True)
            removed.append(until(prefix, False))
            time.sleep(1.0)
    finally:
        lab.down()
    from bench.footprint_bench import spread

    return [
        (f"grid4x4: a prefix added at {origin} in every node's view (ms)", spread(added), f"{runs} runs"),
        (f"grid4x4: a prefix removed at {origin} gone from every view (ms)", spread(removed), f"{runs} runs"),
    ]
