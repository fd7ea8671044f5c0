"""Fail-over outage in the seed lab, three ways, plus controller reaction time.

(a) the thread's situation: one peer entry whose endpoint is moved to a
    gateway that shares its key;
(b) a switch to a backup peer that was never handshaked;
(c) meshctl's warm switch after a gateway dies (detection included).
For (a) and (b) the move is made the instant the gateway dies (an oracle
detector), so they measure what WireGuard itself costs; (c) includes meshctl's
own detection.  Then >= 100 planned switches with hold 0 give the controller's
reaction (Babel event -> WireGuard write done) and, apart, the deliberate
make-before-break wait.  Needs root; every lab gets a unique tag and is removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import secrets
import subprocess
import time

from meshctl.babel.connection import Connection
from meshctl.babel.endpoint import parse_endpoint
from meshctl.lab.check import check_converged, wait_until
from meshctl.lab.ping import Pinger, PingResult
from meshctl.lab.plan import MESHCTL_RTPROTO, LabPlan, make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from meshctl.node.sockets import query_status
from meshctl.wireguard.keys import read_private_key
from meshctl.wireguard.uapi import SetPeer, SetRequest
from meshctl.wireguard.uapi_client import uapi_set

SEED = os.path.join(os.path.dirname(__file__), "..", "topologies", "seed.toml")
TARGET = "10.200.0.7"
STEER = ipaddress.ip_network("10.200.0.0/24")
SWITCHES = 100


def _lab(daemons: bool, **uplink_changes: object) -> Lab:
    spec = load_lab(SEED)
    uplinks = tuple(dataclasses.replace(u, **uplink_changes) for u in spec.uplinks)  # type: ignore[arg-type]
    spec = dataclasses.replace(spec, daemons=daemons, uplinks=uplinks)
    return Lab(make_plan(spec, "b" + secrets.token_hex(2)))


def _key(plan: LabPlan, node: str, ifname: str):  # noqa: ANN202
    return read_private_key(os.path.join(plan.node(node).run_dir, f"{ifname}.key"))


def _route(plan: LabPlan, node: str, ifname: str) -> None:
    subprocess.run(["ip", "-n", plan.node(node).namespace, "route", "replace", "10.98.0.1/32", "dev", ifname,
                    "proto", str(MESHCTL_RTPROTO)], check=True)


def _flowing(plan: LabPlan) -> str | None:
    c = plan.node("client")
    out = subprocess.run(["ip", "netns", "exec", c.namespace, "ping", "-c", "1", "-W", "1", "-I", "10.98.0.1", TARGET],
                         capture_output=True)
    return None if out.returncode == 0 else "no reply yet"


def manual_scenario(shared_key: bool, run_for: float) -> PingResult:
    """(a) or (b): uplinks configured by hand over UAPI, moved at the instant gw1 dies."""
    lab = _lab(daemons=False)
    plan = lab.plan
    lab.up()
    try:
        wait_until(lambda: check_converged(plan), 60, "convergence")
        client = plan.node("client")
        assert client.uplink is not None
        u = client.uplink.ifname
        g1, g2 = plan.node("gw1").gateway_ifname or "", plan.node("gw2").gateway_ifname or ""
        ck, k1 = _key(plan, "client", u), _key(plan, "gw1", g1)
        k2 = k1 if shared_key else _key(plan, "gw2", g2)
        ep = {g.name: g.endpoint for g in client.uplink.gateways}
        ctl = {g.name: ipaddress.ip_network(f"{g.control}/32") for g in client.uplink.gateways}
        client_addr = (ipaddress.ip_network("10.98.0.1/32"),)

        async def configure() -> None:
            peers = [SetPeer(k1.public, endpoint=ep["gw1"], persistent_keepalive=10, allowed_ips=(STEER, ctl["gw1"]))]
            if not shared_key:  # (b): a backup peer, configured but never used: no handshake
                peers.append(SetPeer(k2.public, endpoint=ep["gw2"], persistent_keepalive=0, allowed_ips=(ctl["gw2"],)))
            await uapi_set(u, SetRequest(private_key=ck.private, listen_port=51900, peers=tuple(peers)))
            await uapi_set(g1, SetRequest(private_key=k1.private, listen_port=51901,
                                          peers=(SetPeer(ck.public, allowed_ips=client_addr),)))
            await uapi_set(g2, SetRequest(private_key=k2.private, listen_port=51901,
                                          peers=(SetPeer(ck.public, allowed_ips=client_addr),)))

        asyncio.run(configure())
        _route(plan, "gw1", g1)
        wait_until(lambda: _flowing(plan), 20, "traffic through gw1")
        pinger = Pinger(client.namespace, TARGET, 0.01, source="10.98.0.1")
        time.sleep(1.0)
        lab.fail_node("gw1")
        if shared_key:  # (a): same peer entry, endpoint moved to gw2 (same key)
            move = SetRequest(peers=(SetPeer(k1.public, update_only=True, endpoint=ep["gw2"]),))
        else:  # (b): prefix moved to the cold backup peer in one write
            move = SetRequest(peers=(SetPeer(k2.public, update_only=True, allowed_ips=(STEER,)),))
        asyncio.run(uapi_set(u, move))
        _route(plan, "gw2", g2)
        time.sleep(run_for)
        return pinger.stop()
    finally:
        lab.down()


def _status(plan: LabPlan) -> dict:
    return asyncio.run(query_status(plan.node("client").control_socket))["uplinks"][0]


def meshctl_scenario() -> PingResult:
    """(c): the daemons do everything; gw1 dies."""
    lab = _lab(daemons=True)
    plan = lab.plan
    lab.up()
    try:
        def ready() -> str | None:
            problem = check_converged(plan)
            if problem:
                return problem
            up = _status(plan)
            if up["chosen"] != "gw1" or {c["state"] for c in up["candidates"]} != {"warm"}:
                return "not ready"
            return _flowing(plan)

        wait_until(ready, 60, "meshctl ready")
        pinger = Pinger(plan.node("client").namespace, TARGET, 0.01, source="10.98.0.1")
        time.sleep(1.0)
        lab.fail_node("gw1")
        time.sleep(3.0)
        return pinger.stop()
    finally:
        lab.down()


def reaction_scenario(switches: int = SWITCHES) -> tuple[dict, dict, int]:
    """Many planned switches (hold 0): toggle gw2's link cost on gw2's babeld."""
    lab = _lab(daemons=True, hold=0.0, margin=0)
    plan = lab.plan
    lab.up()
    try:
        wait_until(lambda: check_converged(plan) or (None if _status(plan)["chosen"] else "no choice"), 60, "ready")
        gw2 = plan.node("gw2")
        ifname = next(t.ifname for t in gw2.tunnels if t.peer == "client")

        async def set_cost(cost: int) -> None:
            conn = await Connection.open(parse_endpoint(f"unix:{gw2.babel_socket}"))
            try:
                await conn.command(f"flush interface {ifname}")
                await conn.command(f"interface {ifname} type wired hello-interval 0.1 rxcost {cost}")
            finally:
                await conn.wait_closed()

        done = 0
        for i in range(switches * 2):
            before = _status(plan)["switches"]
            want = "gw2" if _status(plan)["chosen"] == "gw1" else "gw1"
            asyncio.run(set_cost(32 if want == "gw2" else 400))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _status(plan)["switches"] == before:
                time.sleep(0.02)
            done = _status(plan)["switches"] - 1  # minus the initial choice
            if done >= switches or i > switches * 2:
                break
        up = _status(plan)
        return up["reaction_ms"], up["prepare_ms"], done
    finally:
        lab.down()


def run() -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    a = manual_scenario(shared_key=True, run_for=25.0)
    rows.append(("(a) one peer, endpoint moved to a gateway sharing its key", f"{a.outage:.2f}", f"{a.lost}/{a.sent}"))
    b = manual_scenario(shared_key=False, run_for=5.0)
    rows.append(("(b) prefix moved to a backup peer never handshaked", f"{b.outage:.2f}", f"{b.lost}/{b.sent}"))
    c = meshctl_scenario()
    rows.append(("(c) meshctl: gateway dies, warm switch (detection included)", f"{c.outage:.2f}", f"{c.lost}/{c.sent}"))
    ratio = a.outage / c.outage if c.outage else float("inf")
    rows.append(("ratio (a)/(c), goal >= 10", f"{ratio:.0f}x", ""))
    reaction, prepare, n = reaction_scenario()
    rows.append((f"controller reaction over {reaction['count']} switches (goal p99 < 10 ms)",
                 f"median {reaction['median']} ms", f"p99 {reaction['p99']} ms"))
    rows.append((f"make-before-break wait over {prepare['count']} planned switches",
                 f"median {prepare['median']} ms", f"p99 {prepare['p99']} ms"))
    return rows
