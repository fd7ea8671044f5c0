"""Lab measuring tools: ping output with timestamps, route gaps from ``ip -ts monitor route``."""

from __future__ import annotations

from datetime import datetime

from meshctl.lab.ping import parse_ping
from meshctl.lab.routewatch import route_gaps

PING = """\
PING 10.200.0.7 (10.200.0.7) from 10.98.0.1 : 56(84) bytes of data.
[1795588569.500000] 64 bytes from 10.200.0.7: icmp_seq=1 ttl=63 time=0.4 ms
[1795588569.510000] 64 bytes from 10.200.0.7: icmp_seq=2 ttl=63 time=0.4 ms
[1795588569.540000] 64 bytes from 10.200.0.7: icmp_seq=5 ttl=63 time=0.4 ms

--- 10.200.0.7 ping statistics ---
6 packets transmitted, 3 received, 50% packet loss, time 50ms
"""


def test_ping_with_timestamps_brackets_each_loss() -> None:
    r = parse_ping(PING, 0.01)
    assert r.sent == 6 and r.received == 3 and r.longest_gap == 2
    assert r.received_at[5] == 1795588569.54
    # seq 6 is the last one: ping's stop may cut its reply off, so it is not counted
    assert r.lost_between() == {3: (1795588569.51, 1795588569.54), 4: (1795588569.51, 1795588569.54)}


def ts(second: float) -> str:
    return datetime.fromtimestamp(1795588569 + second).isoformat(timespec="microseconds")


def test_route_gaps_from_babeld_delete_then_add() -> None:
    lines = [
        f"[{ts(0.100)}] 10.98.0.9 via inet6 fe80::2 dev w4-2 proto babel onlink",
        f"[{ts(0.200)}] Deleted 10.98.0.1 via inet6 fe80::2 dev w4-2 proto babel onlink",
        f"[{ts(0.200050)}] unreachable 10.98.0.1 proto babel metric 4294967295",
        f"[{ts(0.200060)}] Deleted unreachable 10.98.0.1 proto babel metric 4294967295",
        f"[{ts(0.200300)}] 10.98.0.1 via inet6 fe80::3 dev w4-3 proto babel onlink",
        f"[{ts(0.500)}] 10.98.0.1 via inet6 fe80::1 dev w2-1 proto 154 metric 1024",  # a second route: no gap ...
        f"[{ts(0.600)}] Deleted 10.98.0.1 via inet6 fe80::3 dev w4-3 proto babel onlink",  # ... when one goes
        "garbage",
    ]
    gaps = route_gaps(lines, "10.98.0.1")
    assert len(gaps) == 1
    start, end = gaps[0]
    assert round((end - start) * 1e6) == 300


def test_a_gap_still_open_closes_at_the_last_line() -> None:
    lines = [f"[{ts(1.0)}] Deleted 10.98.0.1 dev g2 proto 152", f"[{ts(1.5)}] unreachable 10.98.0.1 proto babel"]
    assert [round(e - s, 3) for s, e in route_gaps(lines, "10.98.0.1")] == [0.5]
