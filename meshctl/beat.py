"""Wake-ups on a shared grid: the cheapest thing an idle daemon can do is wake up less often.

On a router the cost of an idle controller is mostly how often its event
loop wakes up (about 150 us each on a small machine, whatever the work),
not what it does then.  babeld reports the same neighbours and routes many
times a second, and probe answers arrive a millisecond after each probe; if
each of those woke the loop on its own, that alone would be most of the
daemon's CPU.  So the things that can wait a little are put on one grid of
times, ``offset + k * period`` on the loop's clock, and the loop wakes once
per grid point for all of them.

Pure functions of the clock, like the rest of the policy.
"""

from __future__ import annotations

import math

# Float division can land a hair either side of a grid point; a point that close counts as reached.
_EPSILON = 1e-9


def beat_at_or_after(t: float, period: float, offset: float = 0.0) -> float:
    """The first grid time ``offset + k * period`` that is not before ``t``."""
    return offset + math.ceil((t - offset) / period - _EPSILON) * period


def next_beat(now: float, period: float, offset: float = 0.0) -> float:
    """The first grid time strictly after ``now``."""
    return offset + (math.floor((now - offset) / period + _EPSILON) + 1) * period


def answers_after(probe_interval: float) -> float:
    """How long after a probe round its answers are read together (one wake-up, not one per answer).

    Answers later than this are read as they come: a far gateway costs wake-ups, never accuracy.
    """
    return min(0.01, probe_interval / 4)
