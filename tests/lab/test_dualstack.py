"""Both address families through the uplink plane (topologies/dualstack.toml, over an IPv6 underlay).

A ping every 10 ms in each family from the client's uplink addresses to
addresses behind the upstream.  Each family has its own choice: a path that
breaks for one family moves that family only.  Silences are judged by the
replies' own timestamps.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from meshctl.lab.faults import set_costs, status, wait
from meshctl.lab.ping import Pinger, PingResult
from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from meshctl.topology.snapshot import fetch_model
from meshctl.wireguard.uapi_client import uapi_get
from tests.lab.conftest import TOPOLOGIES, unique_tag

TARGETS = {4: "10.200.0.7", 6: "2001:db8:200::7"}
BOUND = 1.5  # seconds: far below each fault's length (see test_faults)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(make_plan(load_lab(os.path.join(TOPOLOGIES, "dualstack.toml")), unique_tag()))
    try:
        lab.up()
        wait(lambda: settled(lab, "gw1", "gw1"), 90, "both families on gw1")
        # Every backup warm too: a backup whose first handshake missed answers only after WireGuard's 5 s retry,
        # and a fault injected before that has nowhere to move (an IPv6 silence of 2.7 s was that, not a move).
        wait(lambda: cold(lab), 30, "every gateway warm")
        yield lab
    finally:
        lab.down()


def cold(lab: Lab) -> str | None:
    """The candidates that are not warm, or None."""
    states = {c["name"]: c["state"] for c in status(lab.plan, "client")["uplinks"][0]["candidates"]}
    return None if all(s == "warm" for s in states.values()) else f"states {states}"


def families(lab: Lab) -> dict[str, dict]:
    return status(lab.plan, "client")["uplinks"][0]["families"]


def return_path(lab: Lab, family: int) -> str | None:
    """The gateway the upstream's installed route to the client's address of ``family`` goes through."""
    up = lab.plan.node("client").uplink
    assert up is not None
    address = up.address_of(family)
    assert address is not None
    model = asyncio.run(fetch_model(f"unix:{lab.plan.node('upstream').babel_socket}", 3.0))
    route = model.installed_route(ipaddress.ip_network(f"{address.ip}/{address.max_prefixlen}"))
    if route is None:
        return None
    return next((t.peer for t in lab.plan.node("upstream").tunnels if t.ifname == route.interface), None)


def settled(lab: Lab, v4: str, v6: str, return_paths: bool = True) -> str | None:
    """Each family on the given gateway, no switch under way, checks answered, the return path through it.

    Without ``return_paths``: a gateway that was just left keeps the mesh's return path for a few
    seconds, handing it to the client over a Babel link.
    """
    for fam, want in (("ipv4", v4), ("ipv6", v6)):
        f = families(lab)[fam]
        if f["chosen"] != want or f["holder"] != want or f["switching"]:
            return f"{fam} on {f['holder']} (chosen {f['chosen']}), not {want}"
        if f["check"]["state"] != "ok":
            return f"{fam} check {f['check']['state']}"
        if (f["last_switch"] or {}).get("ago_s", 0) < 1.0:
            return f"{fam} switched less than a second ago"
        if return_paths and return_path(lab, int(fam[-1])) != want:
            return f"{fam} return path not via {want}"
    return None


def pingers(lab: Lab) -> dict[int, Pinger]:
    client = lab.plan.node("client")
    assert client.uplink is not None
    return {f: Pinger(client.namespace, TARGETS[f], 0.01, source=str(client.uplink.address_of(f).ip))  # type: ignore[union-attr]
            for f in (4, 6)}


def stop(ps: dict[int, Pinger]) -> dict[int, PingResult]:
    return {f: p.stop() for f, p in ps.items()}


def test_each_family_moves_alone_when_only_its_path_breaks(lab: Lab) -> None:
    """gw1 stops forwarding IPv6 toward the upstream (Babel still shows the route): the IPv6 check
    catches it and IPv6 moves to gw2; IPv4 stays on gw1 and loses nothing."""
    gw1 = lab.plan.node("gw1")
    blackhole = ["ip", "-n", gw1.namespace, "-6", "rule", "add", "to", "2001:db8:200::/64", "blackhole",
                 "priority", "10"]
    ps = pingers(lab)
    try:
        time.sleep(1.0)
        subprocess.run(blackhole, check=True)
        try:
            wait(lambda: settled(lab, "gw1", "gw2", return_paths=False), 30, "IPv6 on gw2, IPv4 still on gw1")
            cause = families(lab)["ipv6"]["last_switch"]["cause"]
            time.sleep(1.0)
        finally:
            subprocess.run([*blackhole[:5], "del", *blackhole[6:]], check=True)
    finally:
        r = stop(ps)
    print(f"IPv6 path broken at gw1: IPv4 {r[4].lost} of {r[4].sent} lost, silence {r[4].silence:.3f} s; "
          f"IPv6 silence {r[6].silence:.3f} s")
    assert cause == "check"
    assert r[4].lost <= 1  # the last ping can be cut off by the stop
    assert r[4].silence < 0.1
    assert r[6].silence < BOUND + 1.0  # the check's timeout (0.35 s) bounds it, not Babel
    # Once gw1 forwards IPv6 again and has stayed fit for its penalty, IPv6 comes back to it.
    wait(lambda: settled(lab, "gw1", "gw1"), 60, "IPv6 back on gw1")


def test_a_planned_switch_loses_nothing_in_either_family(lab: Lab) -> None:
    gw2 = lab.plan.node("gw2")
    ps = pingers(lab)
    try:
        time.sleep(1.0)
        set_costs(lab.plan, (("gw2", "client", 32), ("upstream", "gw2", 32)))  # gw2: 32 + 32 against 96 + 96
        wait(lambda: settled(lab, "gw2", "gw2"), 30, "both families on gw2")
        time.sleep(1.0)
    finally:
        r = stop(ps)
    print(f"planned switch: IPv4 {r[4].lost} of {r[4].sent} lost, IPv6 {r[6].lost} of {r[6].sent} lost")
    assert r[4].lost_in(0, float("inf")) == 0 and r[6].lost_in(0, float("inf")) == 0
    assert {f["last_switch"]["cause"] for f in families(lab).values()} == {"better"}
    # Replies came back through gw2 in both families: its tunnel to the client carried traffic both ways.
    dev = asyncio.run(uapi_get(gw2.gateway_ifname or ""))
    assert dev.peers[0].rx_bytes > 0 and dev.peers[0].tx_bytes > 0


def test_the_chosen_gateway_loses_power_and_both_families_resume_together(lab: Lab) -> None:
    log = os.path.join(lab.plan.node("client").run_dir, "meshctl.log")
    ps = pingers(lab)
    try:
        time.sleep(1.0)
        start = os.path.getsize(log)
        lab.fail_node("gw2")
        wait(lambda: None if {f["holder"] for f in families(lab).values()} == {"gw1"} else "not moved", 30,
             "both families on gw1")
        wait(lambda: None if return_path(lab, 4) == return_path(lab, 6) == "gw1" else "return path", 30,
             "return paths through gw1")
        time.sleep(1.0)
    finally:
        r = stop(ps)
    print(f"power loss: IPv4 silence {r[4].silence:.3f} s, IPv6 silence {r[6].silence:.3f} s")
    assert r[4].silence < BOUND and r[6].silence < BOUND
    assert abs(r[4].silence - r[6].silence) < 0.05  # one detection, one write: both families move at once
    # Once, and for good: left for its silence, gw2 became a backup, judged on a slower pace, and its last
    # answer must not make it "answer probes" again for a moment (nor stop answering a second time).
    with open(log, errors="replace") as f:
        f.seek(start)
        said = [line.split("gateway gw2 ", 1)[1].strip() for line in f if "gateway gw2 " in line]
    assert said == ["stopped answering probes"]
