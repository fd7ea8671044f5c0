"""Gateway choice with hysteresis: pure, the clock is an argument.

Theory of operation
-------------------
Each uplink has candidate gateways.  For each, the adapter reports the best
Babel metric toward it, the gateway's own metric toward the steered prefixes
(from its probe answers, not counting routes back through this client), the
age of its WireGuard handshake, whether it answers probes, and whether the
path through it passed its end-to-end check.  A candidate ranks by its *path
metric*: the metric to the gateway plus the gateway's metric onward.

A candidate is *eligible* when Babel can reach it (metric < 65535), it
answers probes through its own tunnel (Babel may still show a dead gateway
as reachable the long way round until the news spreads), it has a route to
the steered prefixes, no check failed through it lately, and its session is
*warm*: a handshake newer than ``warm_age`` seconds, well inside WireGuard's
REJECT_AFTER_TIME (180 s), so switching to it needs no handshake.

- No choice yet, or the chosen gateway is unreachable, down, has lost its
  route onward, or failed its check: switch at once to the best eligible
  candidate (lowest path metric, then name).
- Otherwise a better candidate must beat the chosen one by ``margin`` for
  ``hold`` seconds without interruption (babeld's own rule is "no worse on raw
  metric and strictly better on smoothed"; the hold also rides out the RTT
  penalty a re-handshaked tunnel shows for a while).
- If nothing is eligible, a reachable cold candidate beats a dead chosen one:
  it will handshake on first use, which is slow but better than nothing.  A
  failed check is different: if every other gateway is unfit too, staying
  loses nothing, and moving would only flap.
- What is not known yet (a gateway not probed long enough, an upstream
  metric not reported yet) never makes a candidate eligible and never makes
  the chosen one leave: a restarted controller keeps what it adopted.

``select`` returns the new state, the switch (if any) and the next deadline
at which it wants to be called again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from meshctl.records import record

INFINITY = 0xFFFF
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0


@record
class Hysteresis:
    """Tuning for one uplink."""

    margin: int = 32  # metric units: a third of a wired/tunnel hop (96)
    hold: float = 3.0  # seconds a challenger must stay better
    warm_age: float = 150.0  # seconds; older handshakes count as cold


@record
class CandidateView:
    """What the adapter knows about one gateway right now."""

    name: str
    metric: int  # Babel metric from here to the gateway
    handshake_age: float | None  # None: never handshaked
    alive: bool | None = True  # answers probes through its tunnel (None: not probed long enough to tell)
    upstream: int | None = 0  # the gateway's metric toward the steered prefixes (None: not reported yet)
    healthy: bool = True  # no end-to-end check failed through it lately

    @property
    def reachable(self) -> bool:
        """Babel has a usable route toward the gateway."""
        return self.metric < INFINITY

    @property
    def onward(self) -> bool:
        """The gateway has a route to the steered prefixes (as far as it has told us)."""
        return self.upstream is None or self.upstream < INFINITY

    @property
    def path(self) -> int:
        """Metric of the whole path: to the gateway, then onward (65535 when either is unreachable)."""
        if not self.reachable or not self.onward:
            return INFINITY
        return min(INFINITY - 1, self.metric + (self.upstream or 0))

    def eligible(self, params: Hysteresis) -> bool:
        """Fit to carry the steered prefixes now, without a handshake."""
        return self.live and self.upstream is not None and self.healthy and self.warm(params)

    @property
    def live(self) -> bool:
        """Reachable in Babel, answering probes, with a route onward: it could carry traffic (maybe cold)."""
        return self.reachable and self.alive is True and self.onward

    def warm(self, params: Hysteresis) -> bool:
        """Its session can carry traffic now, without a handshake."""
        return self.handshake_age is not None and self.handshake_age < params.warm_age

    def state(self, params: Hysteresis) -> str:
        """One word for status: ``warm``, ``cold``, ``unreachable``, ``down``, ``no-route``, ``check-failed``, ``unknown``."""
        if not self.reachable:
            return "unreachable"
        if self.alive is False:
            return "down"
        if not self.onward:
            return "no-route"
        if not self.healthy:
            return "check-failed"
        if self.alive is None or self.upstream is None:
            return "unknown"
        return "warm" if self.warm(params) else "cold"


@record
class Switch:
    """One decision to move the steered prefixes."""

    old: str | None
    new: str
    reason: str
    at: float
    old_metric: int | None = None
    new_metric: int | None = None
    #: One word for metrics and log filters: see :data:`CAUSES`.
    cause: str = ""


#: initial: first choice; adopted: taken over from the device after a restart;
#: gone: left the config; unreachable: no Babel route to it; down: not
#: answering probes (or no session); no-route: it lost its route onward;
#: check: the end-to-end check failed through it; better: a planned move.
CAUSES = ("initial", "adopted", "gone", "unreachable", "down", "no-route", "check", "better")
#: Causes where the old gateway no longer carries traffic: switch at once.
FAILURE_CAUSES = frozenset({"gone", "unreachable", "down", "no-route", "check"})


@record
class SelectorState:
    """Everything ``select`` remembers between calls."""

    chosen: str | None = None
    challenger: str | None = None
    since: float = 0.0
    last_switch: Switch | None = None
    switches: int = 0


def _why_leave(c: CandidateView, params: Hysteresis) -> tuple[str, str] | None:
    """(cause, explanation) when the chosen gateway must be left at once."""
    if not c.reachable:
        return "unreachable", f"{c.name} unreachable (metric {INFINITY})"
    if c.alive is False:
        return "down", f"{c.name} down (not answering probes)"
    if not c.onward:
        return "no-route", f"{c.name} has no route to the steered prefixes"
    if not c.healthy:
        return "check", f"check target not answering through {c.name}"
    if c.alive is None:
        return None  # not probed long enough to tell: keep what we have
    if c.handshake_age is None:
        return "down", f"{c.name} down (no handshake)"
    if c.handshake_age >= REJECT_AFTER_TIME:
        return "down", f"{c.name} down (last handshake {c.handshake_age:.0f} s ago)"
    return None


def _best(cands: Sequence[CandidateView]) -> CandidateView | None:
    return min(cands, key=lambda c: (c.path, c.name), default=None)


def select(
    state: SelectorState, candidates: Sequence[CandidateView], now: float, params: Hysteresis
) -> tuple[SelectorState, Switch | None, float | None]:
    """Decide; see the module docstring."""
    by_name = {c.name: c for c in candidates}
    eligible = [c for c in candidates if c.eligible(params)]
    best = _best(eligible)
    current = by_name.get(state.chosen) if state.chosen else None

    def switch_to(target: CandidateView, cause: str, reason: str) -> tuple[SelectorState, Switch, None]:
        sw = Switch(state.chosen, target.name, reason, now, current.path if current else None, target.path, cause)
        return SelectorState(target.name, None, 0.0, sw, state.switches + 1), sw, None

    if current is None:
        if best is not None:
            if state.chosen is None:
                cause, why = "initial", "initial choice"
            else:
                cause, why = "gone", f"{state.chosen} is no longer a candidate"
            return switch_to(best, cause, f"{why}: {best.name} (metric {best.path})")
        cold = _best([c for c in candidates if c.live and c.upstream is not None and c.healthy])
        if cold is not None and state.chosen is None:
            return switch_to(cold, "initial", f"initial choice: {cold.name} (metric {cold.path}, cold: no warm gateway)")
        return state, None, None

    leave = _why_leave(current, params)
    if leave is not None:
        target = best
        if target is None and not current.live:
            # A hard failure: a cold but live gateway beats a dead one.  For a soft
            # one (no recent handshake, a failed check) only a fit target helps;
            # otherwise two unfit gateways would trade places on every call.
            target = _best([c for c in candidates if c.live and c.healthy and c.name != current.name])
        if target is None or target.name == current.name:
            return replace(state, challenger=None), None, None
        note = "" if target.warm(params) else ", cold: it will handshake first"
        return switch_to(target, leave[0], f"{leave[1]}; {target.name} metric {target.path}{note}")

    if best is None or best.name == current.name or best.path + params.margin > current.path:
        return replace(state, challenger=None, since=0.0), None, None
    if state.challenger != best.name:
        return replace(state, challenger=best.name, since=now), None, now + params.hold
    if now - state.since >= params.hold:
        gain = current.path - best.path
        return switch_to(
            best,
            "better",
            f"{best.name} better by {gain} ({best.path} vs {current.path}) for {now - state.since:.1f} s",
        )
    return state, None, state.since + params.hold
