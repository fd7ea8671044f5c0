"""The README's demo: bring up the seed mesh, show it, kill a gateway, show the move.

Run as root: ``python -m meshctl.demo topologies/seed.toml``.  It measures the
outage a steady ping (every 50 ms, client -> upstream) sees when the gateway
carrying the traffic dies, and always removes the lab at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time

from meshctl.cli import fetch_model
from meshctl.errors import MeshctlError
from meshctl.lab.check import check_converged
from meshctl.lab.ping import Pinger
from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab

TARGET = ipaddress.ip_network("10.200.0.0/24")
PING_INTERVAL = 0.05
# Inside the upstream's /24 (all of it is local there) but not its /32: the /24 route decides.
PING_TARGET = "10.200.0.7"


def say(text: str) -> None:
    print(text, flush=True)


def gateway_of(lab: Lab, client: str) -> tuple[str | None, bool]:
    """(gateway the client's route to the upstream goes through, is that neighbour alive)."""
    model = asyncio.run(fetch_model(f"unix:{lab.plan.node(client).babel_socket}", 5.0))
    route = model.installed_route(TARGET)
    if route is None:
        return None, False
    alive = any(n.reachable for k, n in model.neighbours.items() if k == route.neighbour)
    for t in lab.plan.node(client).tunnels:
        if t.ifname == route.interface:
            return t.peer, alive
    return None, False


def show_routes(lab: Lab, node: str) -> None:
    model = asyncio.run(fetch_model(f"unix:{lab.plan.node(node).babel_socket}", 5.0))
    names = {t.ifname: t.peer for t in lab.plan.node(node).tunnels}
    for prefix, route in sorted(model.installed_routes().items(), key=lambda kv: (kv[0].version, kv[0])):
        say(f"    {str(prefix):16} via {names.get(route.interface, route.interface):8} metric {route.metric}")


def run(path: str, tag: str | None) -> int:
    spec = load_lab(path)
    lab = Lab(make_plan(spec, tag), progress=lambda line: say("  " + line))
    say(f"== bringing up {spec.name}: {spec.description}")
    lab.up()
    ping = None
    try:
        say("== waiting for Babel to converge")
        deadline = time.monotonic() + 60
        while (problem := check_converged(lab.plan)) is not None:
            if time.monotonic() > deadline:
                raise MeshctlError(f"the mesh did not converge within 60 s: {problem}")
            time.sleep(0.5)
        gw = gateway_of(lab, "client")[0]
        say("== the client's routes (from babeld's local interface):")
        show_routes(lab, "client")
        say(f"== traffic client -> {PING_TARGET} goes through {gw}; pinging every {PING_INTERVAL * 1000:.0f} ms")
        ping = Pinger(lab.plan.node("client").namespace, PING_TARGET, PING_INTERVAL)
        time.sleep(2)
        say(f"== killing {gw}: its links go down, its babeld and wireguard-go stop")
        killed_at = time.monotonic()
        lab.fail_node(gw)
        while True:
            new, alive = gateway_of(lab, "client")
            if new not in (gw, None) and alive:
                break
            if time.monotonic() - killed_at > 60:
                raise MeshctlError("no fail-over within 60 s")
            time.sleep(0.1)
        moved = time.monotonic() - killed_at
        time.sleep(2)
        result = ping.stop()
        ping = None
        say(f"== Babel moved the route to {new} {moved:.1f} s after {gw} died")
        show_routes(lab, "client")
        say(f"== ping: {result.sent} sent, {result.received} received, longest outage {result.outage:.2f} s")
        say("   (Babel's detection time at hello-interval 1 s; meshctl's warm WireGuard")
        say("    switch on the uplink plane is what makes this sub-second: see issue #4)")
        return 0
    finally:
        if ping is not None:
            ping.stop()
        say("== removing the lab")
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="topologies/seed.toml")
    parser.add_argument("--tag", help="name prefix for the lab (default: the file's)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: run as root (it builds network namespaces)", file=sys.stderr)
        return 4
    try:
        return run(args.file, args.tag)
    except MeshctlError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
