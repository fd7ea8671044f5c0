"""Forged gossip flooded from the underlay (the WAN side) never reaches the decoder or Ed25519.

In the seed lab, gw1 floods the client's gossip port through their shared underlay veth, at the
veth's link-local address and at a global IPv6 address added for the test.  Every datagram is a
well-formed description, signed by a key nobody trusts, claiming to come from gw2.  The client
counts them all as ``underlay``; its signature checks and its view of the mesh are untouched.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

from meshctl.config import DEFAULT_GOSSIP_PORT
from meshctl.node.sockets import query
from tests.lab.conftest import RunningLab, converged

FLOOD = 3000

SENDER = """
import socket, sys, time
from nacl.signing import SigningKey as Ed25519PrivateKey
from meshctl.gossip.table import Description, NodeInfo, sign
data = sign(Description("gw2", 10**19, time.time(), 60.0, NodeInfo("gw2", "rid")), Ed25519PrivateKey.generate())
count, port, targets = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for target in targets:
    host, _, ifname = target.partition("%")
    scope = socket.if_nametoindex(ifname) if ifname else 0
    for i in range(count):
        s.sendto(data, (host, port, 0, scope))
        if i % 50 == 0:
            time.sleep(0.002)
"""


def ns(lab: RunningLab, node: str, *argv: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", lab.plan.node(node).namespace, *argv],
                         capture_output=True, text=True, check=True, timeout=120)
    return out.stdout


def rcvbuf_errors(lab: RunningLab, node: str) -> int:
    """Datagrams the node's kernel dropped because a socket's buffer was full (per namespace)."""
    counters = dict(line.split() for line in ns(lab, node, "cat", "/proc/net/snmp6").splitlines() if line.strip())
    return int(counters["Udp6RcvbufErrors"])


def gossip_status(lab: RunningLab, node: str) -> dict:
    status: dict = asyncio.run(query(lab.plan.node(node).control_socket, "status"))["gossip"]
    return status


def test_gossip_flood_from_the_underlay_is_dropped_before_verification(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("seed")
    lab.wait_for(converged(lab), 60, "seed convergence")
    lab.wait_for(lambda: None if gossip_status(lab, "client")["origins"] == 3 else "not every origin yet", 60,
                 "the client's whole gossip view")
    client_veth = next(v for v in lab.plan.node("client").veths if v.peer == "gw1")
    gw1_veth = next(v for v in lab.plan.node("gw1").veths if v.peer == "client")
    ns(lab, "client", "ip", "addr", "add", "2001:db8:77::1/64", "dev", client_veth.ifname, "nodad")
    ns(lab, "gw1", "ip", "addr", "add", "2001:db8:77::2/64", "dev", gw1_veth.ifname, "nodad")
    link_local = ns(lab, "client", "ip", "-6", "-o", "addr", "show", "dev", client_veth.ifname, "scope", "link")
    client_ll = link_local.split()[3].split("/")[0]
    before, drops_before = gossip_status(lab, "client"), rcvbuf_errors(lab, "client")

    ns(lab, "gw1", sys.executable, "-c", SENDER, str(FLOOD), str(DEFAULT_GOSSIP_PORT),
       f"{client_ll}%{gw1_veth.ifname}", "2001:db8:77::1")

    seen: list[int] = []

    def settled() -> str | None:
        seen.append(gossip_status(lab, "client")["rejected"].get("underlay", 0))
        return None if len(seen) > 1 and seen[-1] == seen[-2] else f"{seen[-1]} counted as underlay so far"

    lab.wait_for(settled, 20, "the flood counted")
    after, dropped = gossip_status(lab, "client"), rcvbuf_errors(lab, "client") - drops_before
    reached_decoder = {k: after["rejected"].get(k, 0) - before["rejected"].get(k, 0)
                       for k in ("unknown-signer", "bad-signature", "malformed", "stale")}
    assert reached_decoder == {"unknown-signer": 0, "bad-signature": 0, "malformed": 0, "stale": 0}
    underlay = after["rejected"]["underlay"] - before["rejected"].get("underlay", 0)
    assert underlay + dropped >= 2 * FLOOD and underlay > FLOOD, (underlay, dropped)  # the kernel may drop a few
    assert after["origins"] == 3
    assert after["bytes_in"] - before["bytes_in"] < FLOOD * 100  # the flood's bytes never got in
