"""Floods of a gateway's control port, from a client and from the underlay, change nothing.

A datagram from an address that is no client's never reaches the socket
(it is tied to the tunnel) or is refused before its MAC is computed; one
source over its rate is cut off cheaply, so the others keep their probes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from meshctl.lab.faults import status, uplink
from tests.lab.conftest import RunningLab
from tests.lab.test_failover import ready

FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if {device!r}:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, {device!r}.encode())
s.bind(({source!r}, 0))
end, n = time.monotonic() + {seconds}, 0
data = b"\\x00" * 40
while time.monotonic() < end:
    for _ in range(100):
        try:
            s.sendto(data, ({target!r}, {port}))
            n += 1
        except OSError:
            pass
print(n)
"""


def flood(lab: RunningLab, node: str, source: str, target: str, device: str = "", seconds: float = 3.0) -> int:
    code = FLOOD.format(device=device, source=source, target=target, port=51902, seconds=seconds)
    out = subprocess.run(["ip", "netns", "exec", lab.plan.node(node).namespace, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_floods_of_the_control_port_change_nothing(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("seed")
    lab.wait_for(ready(lab), 60, "seed ready")
    client, gw2 = lab.plan.node("client"), lab.plan.node("gw2")
    assert client.uplink is not None and gw2.gateway_address is not None
    before = uplink(lab.plan)
    rejected_before = status(lab.plan, "gw2")["counters"]["rejected_datagrams"]
    # Through the tunnel, from the client's own address, to the backup gateway: at full speed.
    sent = flood(lab, "client", str(client.uplink.address.ip), str(gw2.gateway_address.ip), client.uplink.ifname)
    # From the underlay, to the gateway's address on the shared link: the socket is tied to the tunnel.
    underlay = next(v for v in client.veths if v.peer == "gw2")
    gw2_underlay = next(v for v in gw2.veths if v.peer == "client")
    sent_underlay = flood(lab, "client", str(underlay.address.ip), str(gw2_underlay.address.ip))
    time.sleep(1.0)
    after = uplink(lab.plan)
    rejected = status(lab.plan, "gw2")["counters"]["rejected_datagrams"]
    print(f"flooded gw2 with {sent} datagrams through the tunnel and {sent_underlay} from the underlay; "
          f"gw2 rejected {rejected}")
    assert sent > 10_000 and sent_underlay > 10_000
    assert after["chosen"] == "gw1" and after["switches"] == before["switches"]  # no switch, no flap of the choice
    assert rejected.get("rate-limited", 0) > rejected_before.get("rate-limited", 0)
    assert rejected.get("rate-limited", 0) + rejected.get("truncated", 0) < sent  # most never reached Python
    # The chosen gateway still announces the client, and the backup is still a fit candidate afterwards.
    lab.wait_for(ready(lab), 30, "seed ready again after the floods")
