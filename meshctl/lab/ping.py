"""A steady ping inside a lab namespace, and what its output says about outages."""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PingResult:
    """Sent, received, and the longest run of lost replies."""

    sent: int
    received: int
    interval: float
    longest_gap: int  # consecutive lost replies, counting a loss still going at the end
    received_seqs: tuple[int, ...] = ()
    received_at: dict[int, float] = field(default_factory=dict)  # seq -> epoch seconds (ping -D)

    def lost_between(self) -> dict[int, tuple[float | None, float | None]]:
        """Each lost seq (the last one excepted: ping's stop can cut its reply off) with the
        arrival times of the replies before and after it, which bracket when it was lost."""
        got = sorted(self.received_at)
        out: dict[int, tuple[float | None, float | None]] = {}
        for seq in sorted(set(range(1, self.sent)) - set(self.received_seqs)):
            before = max((s for s in got if s < seq), default=None)
            after = min((s for s in got if s > seq), default=None)
            out[seq] = (self.received_at.get(before) if before else None,
                        self.received_at.get(after) if after else None)
        return out

    @property
    def lost(self) -> int:
        """Replies that never came."""
        return self.sent - self.received

    @property
    def outage(self) -> float:
        """Longest gap in seconds (lost replies x interval): what ping's pace promised, not what traffic saw."""
        return self.longest_gap * self.interval

    @property
    def silence(self) -> float:
        """The longest silence between two consecutive replies, by their own timestamps (``ping -D``).

        This is what traffic saw: on a loaded machine ping cannot hold a 10 ms
        pace, so lost replies x interval understates an outage.
        """
        times = sorted(self.received_at.values())
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def silence_between(self, start: float, end: float) -> float:
        """The longest silence between replies that overlaps the wall-clock window [start, end]."""
        times = sorted(self.received_at.values())
        gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b >= start and a <= end]
        return max(gaps, default=0.0)

    def lost_in(self, start: float, end: float) -> int:
        """Replies lost whose neighbours arrived within [start, end] (wall clock)."""
        return sum(1 for after, before in self.lost_between().values()
                   if (before or float("inf")) >= start and (after or 0.0) <= end)


def parse_ping(output: str, interval: float) -> PingResult:
    """Parse iputils ``ping -n [-D]`` output."""
    seqs = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", output)})
    at = {int(s): float(t) for t, s in re.findall(r"^\[(\d+\.\d+)\].*?icmp_seq=(\d+) ttl=", output, re.M)}
    match = re.search(r"(\d+) packets transmitted", output)
    sent = int(match.group(1)) if match else (seqs[-1] if seqs else 0)
    edges = [0, *seqs, sent + 1]
    gap = max((b - a - 1 for a, b in zip(edges, edges[1:], strict=False)), default=0)
    return PingResult(sent, len(seqs), interval, gap, tuple(seqs), at)


class Pinger:
    """``ping`` from a namespace; :meth:`stop` ends it (SIGINT) and parses the output."""

    def __init__(self, namespace: str, target: str, interval: float = 0.01, source: str | None = None) -> None:
        self.interval = interval
        argv = ["ip", "netns", "exec", namespace, "ping", "-D", "-n", "-i", str(interval), "-W", "1"]
        if source:
            argv += ["-I", source]
        self.proc = subprocess.Popen([*argv, target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> PingResult:
        """Stop this ping (only the process we started) and parse what it printed."""
        return parse_ping(interrupt(self.proc, 10.0), self.interval)


def interrupt(proc: subprocess.Popen[str], timeout: float) -> str:
    """SIGINT one process we started (it prints its summary), then its whole output; SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out
