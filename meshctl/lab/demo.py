"""The README's demo: bring up the seed mesh, kill the active gateway, show the move.

Run as root: ``python -m meshctl.lab.demo topologies/seed.toml``.  A ping every
10 ms goes from the client's uplink address to an address behind the
gateways; the demo kills the gateway carrying it (links down, processes
stopped), reports what meshctl decided and what the traffic saw, and always
removes the lab at the end.
"""

from __future__ import annotations

import argparse
import asyncio
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
PING_TARGET = "10.200.0.7"  # inside the upstream's 10.200.0.0/24


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
    ping = None
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
        src = str(client.uplink.address.ip)
        say(f"== pinging {PING_TARGET} from {src} every {PING_INTERVAL * 1000:.0f} ms (through {gw})")
        ping = Pinger(client.namespace, PING_TARGET, PING_INTERVAL, source=src)
        time.sleep(2)
        say(f"== killing {gw}: its links go down, its babeld, wireguard-go and meshctl stop")
        lab.fail_node(gw)
        time.sleep(3)
        result = ping.stop()
        ping = None
        status = client_status(lab)
        up = status["uplinks"][0]
        say("== meshctl status on the client after the failure:")
        say("   " + _format_status(status).replace("\n", "\n   "))
        say(f"== ping: {result.sent} sent, {result.received} received, longest outage {result.outage:.2f} s")
        say("   (the thread's setup, one peer whose endpoint moves to the other gateway,")
        say("    loses ~15 s here: `make bench` measures both in the same lab)")
        return 0 if up["chosen"] != gw else 1
    finally:
        if ping is not None:
            ping.stop()
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
