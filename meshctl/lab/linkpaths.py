"""Looking at a lab's managed links from outside: which path carries traffic, cutting a path, silences.

Shared by the lab tests and the link-plane benchmark.  Everything here runs
``ip`` in the lab's own namespaces and reads the daemon's status.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from typing import Any

from meshctl.lab.ping import PingResult
from meshctl.lab.plan import ManagedLinkPlan, NodePlan
from meshctl.node.sockets import query


def link_status(node: NodePlan, index: int = 0) -> dict[str, Any]:
    """The node's daemon's status of one managed link (neighbour), as ``meshctl status --json`` shows it."""
    return asyncio.run(query(node.control_socket, "status"))["links"][index]


def route_dev(node: NodePlan, target: str) -> str:
    """The interface the kernel sends ``target``'s packets out of (babeld's installed route); "" for none."""
    out = subprocess.run(["ip", "-n", node.namespace, "route", "get", target], capture_output=True, text=True).stdout
    match = re.search(r" dev (\S+)", out)
    return match.group(1) if match else ""


def set_path(node: NodePlan, link: ManagedLinkPlan, path: int, state: str) -> float:
    """Take ``node``'s underlay veth on one path of ``link`` ``down`` (or ``up``); returns when (epoch seconds)."""
    veth = [v for v in node.veths if v.peer == link.peer][path]
    at = time.time()
    subprocess.run(["ip", "-n", node.namespace, "link", "set", veth.ifname, state], check=True, timeout=10)
    return at


def paths_problem(*nodes: NodePlan) -> str | None:
    """None when every path tunnel of every managed link of ``nodes`` is up in babeld and handshaked."""
    for node in nodes:
        for index in range(len(node.managed)):
            for path in link_status(node, index)["paths"]:
                if path["state"] != "up" or path["handshake_age_s"] is None:
                    return f"{node.name}: {path['interface']} is {path['state']}"
    return None


def silence(result: PingResult, start: float, end: float) -> float:
    """The longest stretch without a reply that overlaps [start, end], by the replies' own stamps (ping -D).

    A silence still going at ``end`` counts up to ``end``.
    """
    stamps = sorted(result.received_at.values())
    stamps.append(max(end, stamps[-1]) if stamps else end)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b >= start and a <= end]
    return max(gaps, default=float("inf"))


def replying(node: NodePlan, target: str) -> str | None:
    """None when ``target`` answers one ping from ``node``."""
    out = subprocess.run(["ip", "netns", "exec", node.namespace, "ping", "-c", "1", "-W", "1", target],
                         capture_output=True)
    return None if out.returncode == 0 else f"no reply from {target}"
