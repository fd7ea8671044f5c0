"""Watch a namespace's kernel routes (``ip -ts monitor route``) and find the gaps in one.

babeld replaces a kernel route by deleting it and then adding the new one
(seen here: 30 to 300 us apart).  A packet routed in that gap finds no route,
and ICMP replies that die there are not even counted by the kernel.  Tests
that must tell such a loss from one of meshctl's use these gaps.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime

from meshctl.lab.ping import interrupt

_LINE = re.compile(r"^\[(?P<ts>[0-9T:.\-]+)\]\s+(?P<deleted>Deleted\s+)?(?P<kind>unreachable\s+)?(?P<dst>\S+)")


def route_gaps(lines: list[str], destination: str) -> list[tuple[float, float]]:
    """(start, end) epoch seconds of every stretch without a usable route to ``destination``.

    A gap opens when the last usable route is deleted and closes when a
    usable (not ``unreachable``) one is added; one still open at the end
    closes at the last line's time.
    """
    gaps: list[tuple[float, float]] = []
    usable = 1  # assume a route when the watch starts: the lab is converged
    opened: float | None = None
    last = None
    for line in lines:
        m = _LINE.match(line.strip())
        if not m or m.group("dst") != destination:
            continue
        at = datetime.fromisoformat(m.group("ts")).timestamp()  # ip prints local time
        last = at
        if m.group("kind"):
            continue  # babeld's unreachable placeholder: not a usable route either way
        usable += -1 if m.group("deleted") else 1
        if usable <= 0 and opened is None:
            usable, opened = 0, at
        elif usable > 0 and opened is not None:
            gaps.append((opened, at))
            opened = None
    if opened is not None and last is not None:
        gaps.append((opened, last))
    return gaps


class RouteWatch:
    """``ip -ts monitor route`` in one namespace, from start to :meth:`stop`."""

    def __init__(self, namespace: str) -> None:
        self.proc = subprocess.Popen(["ip", "-n", namespace, "-ts", "monitor", "route"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> list[str]:
        """Stop this watch (only the process we started) and return its lines."""
        return interrupt(self.proc, 5.0).splitlines()
