"""Fail-over, judged by what traffic sees: the fault table, the seed case beside it, the controller's reaction.

- The seed case: the thread's situation in the seed lab, one peer entry
  whose endpoint is moved to a gateway that shares its key, the instant the
  gateway dies (an oracle detector: what WireGuard itself costs).
- The fault table: topologies/faults.toml (a client, three gateways, one
  behind a relay), every fault of lab/faults.py in one lab, RUNS labs.  The
  silence is the longest gap between ping replies by their own timestamps
  (``ping -D``), not lost x interval.
- >= 100 planned switches with hold 0 give the controller's reaction (Babel
  event -> WireGuard write done) and, apart, the make-before-break wait.

Needs root; every lab gets a unique tag and is removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import secrets
import statistics
import subprocess
import time

from meshctl.babel.connection import Connection
from meshctl.babel.endpoint import parse_endpoint
from meshctl.lab.check import check_converged, wait_until
from meshctl.lab.faults import PLANNED, FaultResult, Faults, set_costs
from meshctl.lab.ping import Pinger, PingResult
from meshctl.lab.plan import MESHCTL_RTPROTO, LabPlan, make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from meshctl.node.sockets import query_status
from meshctl.wireguard.keys import read_private_key
from meshctl.wireguard.uapi import SetPeer, SetRequest
from meshctl.wireguard.uapi_client import uapi_set

SEED = os.path.join(os.path.dirname(__file__), "..", "topologies", "seed.toml")
FAULTS = os.path.join(os.path.dirname(__file__), "..", "topologies", "faults.toml")
DUALSTACK = os.path.join(os.path.dirname(__file__), "..", "topologies", "dualstack.toml")
DUAL_TARGETS = {4: "10.200.0.7", 6: "2001:db8:200::7"}
RUNS = int(os.environ.get("MESHCTL_BENCH_RUNS", "5"))
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
            # gw2 strictly better than gw1 (16 + 160 < 96 + 96: path metrics), then far worse
            asyncio.run(set_cost(16 if want == "gw2" else 400))
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


def fault_runs(runs: int = RUNS) -> list[list[FaultResult]]:
    """Every fault, in one fresh faults lab per run."""
    out = []
    for _ in range(runs):
        lab = Lab(make_plan(load_lab(FAULTS), "b" + secrets.token_hex(2)))
        lab.up()
        try:
            f = Faults(lab, ["gw1", "gw2", "gw3"], "gw1")
            f.ready(90)
            results = [f.upstream_loss(), f.gateway_meshctl_kill(), f.client_meshctl_restart()]
            results += [f.planned(to, *PLANNED[to]) for to in ("gw2", "gw3")]
            results += [f.power_loss(), f.gateway_babeld_kill()]
            out.append(results)
        finally:
            lab.down()
    return out


def _holders(plan: LabPlan) -> dict[str, str | None]:
    return {f: v["holder"] for f, v in _status_all(plan)["uplinks"][0]["families"].items()}


def _status_all(plan: LabPlan) -> dict:
    return asyncio.run(query_status(plan.node("client").control_socket))


def dualstack_runs(runs: int = RUNS) -> list[dict[str, dict[int, float]]]:
    """On dualstack.toml: a planned switch (replies lost per family), then the chosen gateway loses power
    (silence per family, by the replies' own timestamps)."""
    return [_dualstack_round() for _ in range(runs)]


def _dualstack_round() -> dict[str, dict[int, float]]:
    """One fresh dualstack lab: the planned switch, then the power loss."""
    lab = Lab(make_plan(load_lab(DUALSTACK), "b" + secrets.token_hex(2)))
    lab.up()
    try:
        plan = lab.plan
        client = plan.node("client")
        assert client.uplink is not None

        def settled(want: str) -> str | None:
            fams = _status_all(plan)["uplinks"][0]["families"]
            bad = [f for f, v in fams.items() if v["holder"] != want or v["switching"]
                   or (v["check"] or {}).get("state") != "ok" or (v["last_switch"] or {}).get("ago_s", 0) < 1.0]
            return f"not settled on {want}: {bad}" if bad else None

        def pings() -> dict[int, Pinger]:
            return {f: Pinger(client.namespace, DUAL_TARGETS[f], 0.01,
                              source=str(client.uplink.address_of(f).ip))  # type: ignore[union-attr]
                    for f in (4, 6)}

        wait_until(lambda: settled("gw1"), 90, "both families on gw1")
        ps = pings()
        time.sleep(1.0)
        set_costs(plan, (("gw2", "client", 32), ("upstream", "gw2", 32)))
        wait_until(lambda: settled("gw2"), 30, "both families on gw2", poll=0.1)
        time.sleep(1.0)
        planned = {f: float(p.stop().lost_in(0, float("inf"))) for f, p in ps.items()}
        ps = pings()
        time.sleep(1.0)
        lab.fail_node("gw2")
        wait_until(lambda: None if set(_holders(plan).values()) == {"gw1"} else "not moved", 30, "moved", poll=0.05)
        time.sleep(1.5)
        power = {f: p.stop().silence for f, p in ps.items()}
        return {"planned": planned, "power": power}
    finally:
        lab.down()


def dualstack_rows(runs: list[dict[str, dict[int, float]]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for f in (4, 6):
        silences = [r["power"][f] for r in runs]
        rows.append((f"dual stack, IPv{f}: gateway power loss", _mmm(silences, 1000), "-", "-", "<= 300 ms median"))
    for f in (4, 6):
        lost = [r["planned"][f] for r in runs]
        rows.append((f"dual stack, IPv{f}: planned switch", "-", _mmm(lost, fmt="{:.0f}"), "-", "0 lost, every run"))
    gaps = [abs(r["power"][4] - r["power"][6]) for r in runs]
    rows.append(("dual stack: |IPv4 - IPv6| power-loss silence", _mmm(gaps, 1000), "-", "-", "<= 50 ms"))
    return rows


def _mmm(values: list[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    if not values:
        return "-"
    return " / ".join(fmt.format(v * scale) for v in (min(values), statistics.median(values), max(values)))


GOALS = {
    "upstream loss": "<= 1000 ms",
    "gateway meshctl SIGKILL": "<= 1000 ms",
    "gateway babeld SIGKILL": "<= 1000 ms",
    "client meshctl SIGKILL + restart": "0 lost",
    "gateway power loss": "<= 300 ms median",
}


def fault_rows(runs: list[list[FaultResult]], seed: list[float]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    seed_median = statistics.median(seed) if seed else 0.0
    rows.append(("seed case: one shared-key peer, endpoint moved when gw1 dies", _mmm(seed, 1000), "-", "-",
                 "baseline"))
    for i, first in enumerate(runs[0]):
        results = [r[i] for r in runs]
        silences = [r.silence for r in results]
        lost = [float(r.lost) for r in results]
        back = [float(r.back_lost) for r in results if r.back_lost is not None]
        goal = GOALS.get(first.fault, "0 lost, every run" if first.fault.startswith("planned") else "")
        if first.fault.startswith("planned"):
            lost = [float(r.lost + (r.back_lost or 0)) for r in results]  # there and back
            back = []
        stale = sum(len(r.stale) for r in results)
        rows.append((first.fault + (f" ({stale} stale announcements!)" if stale else ""), _mmm(silences, 1000),
                     _mmm(lost, fmt="{:.0f}"), _mmm(back, fmt="{:.0f}") if back else "-", goal))
    power = [r[i].silence for r in runs for i, x in enumerate(runs[0]) if x.fault == "gateway power loss"]
    if power and seed:
        ratio = seed_median / statistics.median(power)
        rows.append(("ratio: seed case / power loss (medians)", f"{ratio:.0f}x", "", "", ">= 30x"))
    return rows


def run() -> list[tuple[str, ...]]:
    """The fault table (each row min / median / max over RUNS runs), with the seed case measured in the same run."""
    seed = [manual_scenario(shared_key=True, run_for=25.0).silence for _ in range(RUNS)]
    return fault_rows(fault_runs(), seed) + dualstack_rows(dualstack_runs())


def reaction_rows() -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    reaction, prepare, n = reaction_scenario()
    rows.append((f"controller reaction over {reaction['count']} switches (goal p99 < 10 ms)",
                 f"median {reaction['median']} ms", f"p99 {reaction['p99']} ms"))
    rows.append((f"make-before-break wait over {prepare['count']} planned switches",
                 f"median {prepare['median']} ms", f"p99 {prepare['p99']} ms"))
    return rows
