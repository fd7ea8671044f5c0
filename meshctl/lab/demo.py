"""The README's demo: bring up the seed mesh, kill the active gateway, show the move.

Run as root: ``python -m meshctl.lab.demo topologies/seed.toml``.  A ping every
10 ms goes, in each address family the client steers, from its uplink
address to an address behind the gateways; the demo kills the gateway
carrying it (links down, processes stopped), reports what meshctl decided and
what the traffic saw (the longest silence between replies, by their own
timestamps), and always removes the lab at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time

from meshctl.cli import _format_status
from meshctl.errors import MeshctlError
from meshctl.lab.check import check_converged, wait_until
from meshctl.lab.ping import Pinger
from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from meshctl.node.sockets import query_status

PING_INTERVAL = 0.01


def target(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """An address inside a steered prefix that the upstream answers (it holds the whole prefix on lo)."""
    return str(prefix[7])


def say(text: str) -> None:
    print(text, flush=True)


def client_status(lab: Lab) -> dict:
    return asyncio.run(query_status(lab.plan.node("client").control_socket))


def run(path: str, tag: str | None) -> int:
    spec = load_lab(path)
    lab = Lab(make_plan(spec, tag), progress=lambda line: say("  " + line))
    client = lab.plan.node("client")
    if client.uplink is None or not client.daemon:
        raise MeshctlError(f"{path}: the demo needs a node 'client' with an [[uplink]] and [lab] daemons = true")
    say(f"== bringing up {spec.name}: {spec.description}")
    lab.up()
    ping: dict[int, Pinger] | None = None
    try:
        say("== waiting for Babel to converge and meshctl to warm up both gateways")
        wait_until(lambda: check_converged(lab.plan), 60, "convergence")

        def ready() -> str | None:
            up = client_status(lab)["uplinks"][0]
            if {c["state"] for c in up["candidates"]} != {"warm"}:
                return "gateways not warm yet"
            best = min(up["candidates"], key=lambda c: (c["metric"], c["name"]))["name"]
            # Wait out the hysteresis: the first gateway to answer may not be the best.
            return None if up["chosen"] == best else f"on {up['chosen']}, {best} is better"

        wait_until(ready, 60, "warm gateways")
        time.sleep(1.0)
        say("== meshctl status on the client:")
        say("   " + _format_status(client_status(lab)).replace("\n", "\n   "))
        gw = client_status(lab)["uplinks"][0]["chosen"]
        pings: dict[int, Pinger] = {}
        for prefix in client.uplink.steer:
            source = client.uplink.address_of(prefix.version)
            if source is None or prefix.version in pings:
                continue
            say(f"== IPv{prefix.version}: pinging {target(prefix)} from {source.ip} every "
                f"{PING_INTERVAL * 1000:.0f} ms (through {gw})")
            pings[prefix.version] = Pinger(client.namespace, target(prefix), PING_INTERVAL, source=str(source.ip))
        ping = pings
        time.sleep(2)
        say(f"== killing {gw}: its links go down, its babeld, wireguard-go and meshctl stop")
        lab.fail_node(gw)
        time.sleep(3)
        results = {f: p.stop() for f, p in pings.items()}
        ping = None
        status = client_status(lab)
        up = status["uplinks"][0]
        say("== meshctl status on the client after the failure:")
        say("   " + _format_status(status).replace("\n", "\n   "))
        for family, result in results.items():
            say(f"== IPv{family} ping: {result.sent} sent, {result.received} received, longest silence between "
                f"replies {result.silence:.3f} s (by their own timestamps)")
        say("   (the thread's setup, one peer whose endpoint moves to the other gateway,")
        say("    loses 9 to 15 s here: `make bench` measures both in the same run)")
        moved = all(f["holder"] != gw for f in up.get("families", {}).values()) if up.get("families") else up["chosen"] != gw
        return 0 if moved else 1
    finally:
        for p in (ping or {}).values():
            p.stop()
        say("== removing the lab")
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
