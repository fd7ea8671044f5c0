"""One uplink's controller, without I/O: probes, checks, decisions, switches, the desired device.

Theory of operation
-------------------
The steered prefixes are split by address family into *groups*; each group
has its own choice (the best IPv4 gateway need not be the best IPv6 one) and
its own switch in progress.  Everything here is driven by the runner, which
passes the clock in (``now``: monotonic seconds for timers, ``wall``: seconds
since the epoch for WireGuard handshake times and datagram stamps) and
carries out what comes back.

Inputs: a device read (:meth:`on_device`; the first one *adopts*: whichever
peer already holds a group's prefixes is that group's choice, so a
restarted controller costs no packet), a probe answer (:meth:`on_ack`), a
check reply (:meth:`on_check_reply`), and :meth:`step` with the Babel model
whenever anything changed or a deadline came.

A switch away from a gateway that still carries traffic is *planned*: it is
made before the old path is broken, one phase at a time::

    PREPARE   new asked for a standby return path through the mesh; old keeps
              the prefixes.  Until new says it stands by and Babel shows its
              announcement, or our own (or STANDBY_TIMEOUT).
    RELEASE   old asked to withdraw and hand replies still reaching it to the
              mesh; until it confirms (or RELEASE_TIMEOUT).
    WRITE     the device moves the prefixes to new in one write; when the
              runner reports the write (:meth:`written`), new is asked to be
              primary and the switch is done.

A switch away from a failed gateway skips straight to WRITE.  If the old
gateway fails during PREPARE or RELEASE, so does the switch in progress.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from meshctl.beat import beat_at_or_after
from meshctl.config import GatewayCandidate, Prefix, UplinkConfig
from meshctl.records import record
from meshctl.topology.model import INFINITY, TopologyModel
from meshctl.uplink.control import FAMILIES, ROLE_NONE, ROLE_PRIMARY, ROLE_STANDBY, Message, Sequence
from meshctl.uplink.policy import CandidateView, SelectorState, Switch, select
from meshctl.wireguard.state import Device, Peer

STANDBY_TIMEOUT = 1.0  # seconds to wait for the new gateway's standby return path
RELEASE_TIMEOUT = 0.5  # seconds to wait for the old gateway to confirm it let go
#: After a gateway that is not next to us confirms it let go, the mesh still needs a moment to move off
#: it: such a gateway demotes its route into its tunnel (through the mesh it could loop between it and
#: a relay), and whatever still reaches it then is only accepted while the prefixes are its.
RELEASE_SETTLE = 0.15
PENALTY_MAX = 300.0  # seconds: the longest a gateway whose check failed is kept out
STRIKES_FORGET = 600.0  # seconds of good checks after which earlier failures are forgiven
#: After a switch away from a failed gateway, a path that has not answered a check yet gets this long
#: before it is judged: the mesh's return path follows only when the new gateway's announcement has
#: spread and the old one's route is gone (Babel's neighbour timeout, when the old gateway died).  A
#: planned switch made its return path before it moved, and is judged at once.
SETTLE = 2.0

PREPARE, RELEASE, WRITE = "prepare", "release", "write"
#: Causes that leave at once even while the old gateway answers probes: its tunnel
#: is gone, or traffic through it is (no route onward, a failed check).  Babel
#: calling a gateway unreachable is not one: the tunnel may well work (a flushed
#: interface, a metric spike), so that switch is made before it breaks.
IMMEDIATE = frozenset({"down", "gone", "no-route", "check"})
#: How far past a gateway's silence deadline it is judged (see :meth:`UplinkController.silent_at`).
_PAST = 1e-4

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_prefix(addr: Address) -> Prefix:
    """The /32 or /128 of one address."""
    return ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")


@dataclass
class ProbeState:
    """Probe bookkeeping for one gateway."""

    sent: dict[int, float] = field(default_factory=dict)  # seq -> send time (bounded)
    first_sent: float | None = None
    next_due: float = 0.0
    last_ack: float | None = None
    rtt: float | None = None
    acks: int = 0
    announced: tuple[int, int] = (ROLE_NONE, ROLE_NONE)  # what the gateway says it does, per family
    upstream: dict[str, int] = field(default_factory=dict)  # prefix -> the gateway's metric, from its last ack
    silent: bool = False  # found silent, and no answer since (see UplinkController.alive)

    def alive(self, now: float, timeout: float) -> bool | None:
        """An ack within ``timeout``: True; none yet but probing only began: None (unknown); else False."""
        if self.last_ack is not None and now - self.last_ack <= timeout:
            return True
        if self.last_ack is None and (self.first_sent is None or now - self.first_sent <= timeout):
            return None
        return False


@dataclass
class Penalty:
    """A gateway through which the check failed: kept out until it has been fit for ``duration``."""

    failed_at: float
    duration: float
    fit_since: float | None = None

    def over(self, now: float) -> bool:
        return self.fit_since is not None and now - self.fit_since >= self.duration


@dataclass
class CheckState:
    """End-to-end checks of one family's path: echo requests to the target through whoever holds the prefixes."""

    target: Address
    via: str | None = None  # the gateway the checks go through now
    since: float = 0.0  # when checks through ``via`` began
    sent: dict[int, float] = field(default_factory=dict)  # seq -> send time, since ``since``
    next_due: float = 0.0
    last_reply: float | None = None
    replies: int = 0
    failed: bool = False  # the last verdict on ``via``
    failures: dict[str, float] = field(default_factory=dict)  # gateway -> when the check last failed through it
    settle: float = 0.0  # extra time the current path has before its first answer (see SETTLE)
    suspect: bool = False  # it failed through two gateways with no reply between: the target, not the paths


@record
class Transition:
    """A planned switch in progress."""

    switch: Switch
    phase: str
    since: float  # when this phase began
    began: float  # when the switch began
    released: float | None = None  # when the old gateway confirmed it let go

@record
class Done:
    """A switch carried out (or not: ``ok`` False when the WireGuard write failed)."""

    family: int
    switch: Switch
    planned: bool
    ok: bool
    reaction: float  # trigger to completed write, without the make-before-break wait
    prepare: float | None  # the make-before-break wait, for a planned switch
    outage: float | None  # for a failure: at most this long since the old gateway's last answer


@dataclass
class Group:
    """The steered prefixes of one address family, and their choice."""

    family: int
    prefixes: tuple[Prefix, ...]
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None  # the client's own, in this family
    state: SelectorState = field(default_factory=SelectorState)
    transition: Transition | None = None
    pending: tuple[Switch, float, float | None] | None = None  # (switch, trigger, prepare) waiting for the write
    check: CheckState | None = None
    history: deque[Switch] = field(default_factory=lambda: deque(maxlen=50))
    #: Gateways the check failed through, kept out for a while: per family, since a gateway that
    #: routes IPv4 but not IPv6 is fit for one and not the other.
    penalties: dict[str, Penalty] = field(default_factory=dict)
    strikes: Counter[str] = field(default_factory=Counter)
    last_strike: dict[str, float] = field(default_factory=dict)

    @property
    def holder(self) -> str | None:
        """The gateway whose peer holds the prefixes now (the old one until a planned switch writes)."""
        t = self.transition
        if t is not None and t.phase in (PREPARE, RELEASE):
            return t.switch.old
        return self.state.chosen


@record
class Step:
    """What :meth:`UplinkController.step` asks of the runner."""

    probe_now: bool = False  # roles changed: tell the gateways at once
    deadline: float | None = None  # call step again by then


class UplinkController:
    """Chooses the gateways for one uplink and says what WireGuard should look like."""

    def __init__(self, config: UplinkConfig, node_name: str, start_ns: int) -> None:
        self.config = config
        self.node = node_name
        self.probes: dict[str, ProbeState] = {g.name: ProbeState() for g in config.gateways}
        self.seq = Sequence(start_ns)
        self.check_seq = 0
        self.causes: Counter[str] = Counter()  # switches by Switch.cause, for metrics
        self.reactions: deque[float] = deque(maxlen=1000)  # trigger -> write done, seconds
        self.prepares: deque[float] = deque(maxlen=1000)  # make-before-break waits, seconds
        self.adopted = False  # the device was read once: its holder is the starting point
        self.groups: dict[int, Group] = {}
        # The steered prefixes as probes carry them, made once: str() of an IPv6 network is slow, and a
        # probe goes out, and an ack comes back, 10 to 40 times a second.
        self._steered = tuple(str(p) for p in config.steer)
        self._steered_by_family = {f: tuple(str(p) for p in config.steer if p.version == f) for f in FAMILIES}
        for family in FAMILIES:
            prefixes = tuple(p for p in config.steer if p.version == family)
            if prefixes:
                address = next((a for a in config.addresses if a.version == family), None)
                target = next((t for t in config.check if t.version == family), None)
                self.groups[family] = Group(family, prefixes, address, check=CheckState(target) if target else None)

    # -- probes -----------------------------------------------------------

    @property
    def probe_timeout(self) -> float:
        """No ack for this long from a gateway that carries traffic: it is down."""
        return self.config.probe_interval * (self.config.probe_loss + 0.5)

    def timeout_for(self, gateway: str) -> float:
        """Backups are probed less often, so their silence is judged on their own pace."""
        return self.interval(gateway) * (self.config.probe_loss + 0.5)

    def _busy(self, gateway: str) -> bool:
        """Does ``gateway`` carry, or is it about to carry or hand over, some group's traffic?"""
        for g in self.groups.values():
            if gateway in (g.holder, g.state.chosen):
                return True
            if g.transition is not None and gateway in (g.transition.switch.old, g.transition.switch.new):
                return True
        return False

    def interval(self, gateway: str) -> float:
        """Seconds between probes to ``gateway``: short for the ones that carry traffic.

        Probes go out on the probe_interval grid (meshctl.beat), so a backup's interval is a whole
        number of those: rounded up, it is also the pace its silence is judged by.
        """
        fast = self.config.probe_interval
        if self._busy(gateway):
            return fast
        return beat_at_or_after(self.config.backup_probe_interval, fast)

    def alive(self, gateway: str, now: float) -> bool | None:
        """Does the gateway answer probes?  None until it had the time to.

        Once found silent, a gateway stays down until it answers again.  Its silence is judged on its
        pace (:meth:`timeout_for`), and a gateway left for its silence becomes a backup, probed less
        often: on that pace its last answer would count as fresh again for a moment, and it would be up,
        then stop answering a second time.
        """
        probe = self.probes[gateway]
        if probe.silent:
            return False
        alive = probe.alive(now, self.timeout_for(gateway))
        if alive is False:
            probe.silent = True
        return alive

    def probes_to_send(self, now: float, wall: float, everyone: bool = False,
                       beat: float | None = None) -> list[tuple[GatewayCandidate, Message]]:
        """The probes due now (all of them with ``everyone``): each says what we ask of that gateway.

        None before the device was read: a restarted controller that has not
        adopted its choice yet would ask its gateway for nothing, and the
        gateway would withdraw the client's return path.
        """
        if not self.adopted:
            return []
        out = []
        steered = self._steered
        for gw in self.config.gateways:
            probe = self.probes[gw.name]
            if not everyone and now < probe.next_due:
                continue
            seq = self.seq.next()
            probe.sent[seq] = now
            if probe.first_sent is None:
                probe.first_sent = now
            # Due again a little early rather than a tick late, counted from the tick's own time (``beat``),
            # not from how late it ran: the next is due by the next tick.  An extra probe (``everyone``)
            # does not put off the regular one; it only brings it forward to a shorter interval.
            again = (now if beat is None else beat) + self.interval(gw.name) * 0.95
            probe.next_due = again if not everyone or now >= probe.next_due else min(probe.next_due, again)
            if len(probe.sent) > 64:
                del probe.sent[min(probe.sent)]
            out.append((gw, Message("probe", self.node, seq, wall, self.roles_for(gw.name), steered)))
        return out

    def next_probe(self) -> float:
        """When the next probe is due."""
        return min(p.next_due for p in self.probes.values())

    def silent_at(self, now: float) -> float | None:
        """When the first gateway that answers probes at ``now`` will have been silent too long (None: none does).

        The runner judges liveness then, at that gateway's own deadline (``probe_loss`` answers missed), not
        at the next probe beat after it: a gateway that lost power is left up to a beat sooner.  A hair past
        the deadline, since at the deadline itself the last answer still counts.
        """
        at = None
        for name, probe in self.probes.items():
            timeout = self.timeout_for(name)
            if probe.last_ack is not None and not probe.silent and probe.alive(now, timeout):
                end = probe.last_ack + timeout + _PAST
                at = end if at is None or end < at else at
        return at

    def role_for(self, gateway: str, family: int) -> int:
        """What ``gateway`` should do with our address of ``family``."""
        g = self.groups.get(family)
        if g is None:
            return ROLE_NONE
        t = g.transition
        if t is not None:
            if gateway == t.switch.new:
                return ROLE_STANDBY
            if gateway == t.switch.old:
                return ROLE_PRIMARY if t.phase == PREPARE else ROLE_NONE
            return ROLE_NONE
        return ROLE_PRIMARY if gateway == g.state.chosen else ROLE_NONE

    def roles_for(self, gateway: str) -> tuple[int, int]:
        """The roles a probe to ``gateway`` asks for, (IPv4, IPv6)."""
        return (self.role_for(gateway, 4), self.role_for(gateway, 6))

    def on_ack(self, gateway: str, message: Message, now: float) -> bool:
        """Record an ack; True when it answers one of our probes."""
        probe = self.probes.get(gateway)
        if probe is None:
            return False
        sent_at = probe.sent.pop(message.seq, None)
        if sent_at is None:
            return False  # not an answer to anything we sent (or a late duplicate)
        probe.last_ack = now
        probe.silent = False
        probe.rtt = now - sent_at
        probe.acks += 1
        probe.announced = message.roles
        steered = self._steered
        if len(message.metrics) == len(steered):
            probe.upstream = dict(zip(steered, message.metrics, strict=True))
        return True

    def upstream(self, gateway: str, family: int) -> int | None:
        """The gateway's metric toward a group's prefixes: the worst of them (None: not reported yet)."""
        reported = self.probes[gateway].upstream
        metrics = [reported.get(p) for p in self._steered_by_family[family]]
        if any(m is None for m in metrics):
            return None
        return max(m for m in metrics if m is not None)

    # -- checks ---------------------------------------------------------------

    @property
    def check_timeout(self) -> float:
        """No check reply for this long (and ``check_loss`` checks sent): the path is broken."""
        return self.config.check_interval * (self.config.check_loss + 0.5)

    def checks_to_send(self, now: float) -> list[tuple[int, Address, int]]:
        """(family, target, sequence number) of the echo requests due now, through each group's holder."""
        out = []
        for g in self.groups.values():
            c = g.check
            if c is None or g.holder is None or now < c.next_due:
                continue
            self.check_seq = (self.check_seq + 1) & 0xFFFF
            c.sent[self.check_seq] = now
            if len(c.sent) > 64:
                del c.sent[min(c.sent)]
            c.next_due = now + self.config.check_interval * 0.95
            out.append((g.family, c.target, self.check_seq))
        return out

    def on_check_reply(self, family: int, seq: int, now: float) -> bool:
        """An echo reply came; True when it answers a check sent through the current holder."""
        g = self.groups.get(family)
        if g is None or g.check is None or g.check.sent.pop(seq, None) is None:
            return False
        g.check.last_reply = now
        g.check.replies += 1
        g.check.failed = False
        g.check.suspect = False
        if g.check.via is not None and now - g.last_strike.get(g.check.via, -STRIKES_FORGET) > STRIKES_FORGET:
            g.strikes.pop(g.check.via, None)
        return True

    def _judge_check(self, g: Group, now: float) -> None:
        """Has the path through the holder stopped answering while its tunnel still does?  Then penalise it."""
        c = g.check
        if c is None:
            return
        if g.holder != c.via:  # new path: judge it afresh
            last = g.state.last_switch
            c.settle = 0.0 if last is not None and last.cause == "better" else SETTLE
            c.via, c.since, c.failed = g.holder, now, False
            c.sent.clear()
            c.next_due = now
            return
        if c.via is None or c.failed:
            return
        answered = c.last_reply is not None and c.last_reply >= c.since
        since = max(c.since, c.last_reply) if answered and c.last_reply is not None else c.since
        unanswered = sum(1 for t in c.sent.values() if t >= since)
        timeout = self.check_timeout if answered else max(self.check_timeout, c.settle)
        if now - since < timeout or unanswered < self.config.check_loss:
            return
        if self.alive(c.via, now) is not True:
            return  # the tunnel itself is silent: the probes decide that case
        c.failed = True
        good = c.last_reply if c.last_reply is not None else float("-inf")
        if any(gw != c.via and t > good for gw, t in c.failures.items()):
            # Unanswered through another gateway too, and nothing answered since: the
            # target is down, not our paths.  Judge no path by it until it answers.
            c.suspect = True
            for gw in c.failures:
                g.penalties.pop(gw, None)
        c.failures[c.via] = now
        if c.suspect:
            return
        g.strikes[c.via] += 1
        g.last_strike[c.via] = now
        duration = min(PENALTY_MAX, max(self.config.hysteresis.hold, self.check_timeout) * 2 ** (g.strikes[c.via] - 1))
        g.penalties[c.via] = Penalty(now, duration)

    def healthy(self, gateway: str, family: int, now: float) -> bool:
        """No check of ``family`` failed through ``gateway``, or it has been fit long enough since."""
        p = self.groups[family].penalties.get(gateway)
        return p is None or p.over(now)

    def _track_penalties(self, g: Group, cands: Iterable[CandidateView], now: float) -> None:
        """A penalised gateway must stay fit (reachable, answering, routed onward) for its whole penalty."""
        for c in cands:
            p = g.penalties.get(c.name)
            if p is None:
                continue
            if p.over(now):
                del g.penalties[c.name]
            elif not c.live:
                p.fit_since = None
            elif p.fit_since is None:
                p.fit_since = now

    # -- decisions ------------------------------------------------------------

    def metric(self, gw: GatewayCandidate, model: TopologyModel) -> int:
        """Best Babel metric toward the gateway (65535 if none)."""
        if gw.mesh is not None:
            return model.best_metric(gw.mesh)
        if gw.router_id is not None:
            return model.best_metric(gw.router_id)
        return INFINITY

    def candidates(self, family: int, model: TopologyModel, device: Device | None, now: float,
                   wall: float) -> list[CandidateView]:
        """What the policy needs to know about every gateway, for one group."""
        out = []
        for gw in self.config.gateways:
            peer = device.peer(gw.public_key) if device else None
            age = wall - peer.last_handshake if peer and peer.last_handshake else None
            alive = self.alive(gw.name, now)
            if alive and age is None:
                # An ack came back through the tunnel, so a handshake completed; the
                # device read that will show it is at most a poll interval away.
                age = 0.0
            out.append(CandidateView(gw.name, self.metric(gw, model), age, alive, self.upstream(gw.name, family),
                                     self.healthy(gw.name, family, now)))
        return out

    def announcement_seen(self, gateway: str, family: int, model: TopologyModel) -> bool:
        """Does Babel already carry our address of ``family`` from ``gateway``?  (The return path exists.)"""
        gw = self.gateway(gateway)
        address = self.groups[family].address
        if gw is None or address is None or gw.mesh is None and gw.router_id is None:
            return False
        router = gw.router_id
        if router is None and gw.mesh is not None:
            routes = model.routes_for(gw.mesh)
            router = routes[0].router_id if routes else None
        own = host_prefix(address.ip)
        return any(r.router_id == router and r.reachable for r in model.routes_for(own))

    def own_announcement(self, family: int, model: TopologyModel) -> bool:
        """Does our babeld announce our own address of ``family`` (the mesh's way back that no gateway can take away)?"""
        address = self.groups[family].address
        if address is None:
            return False
        own = host_prefix(address.ip)
        return any(x.prefix == own for x in model.xroutes.values())

    def step(self, model: TopologyModel, synced: bool, device: Device | None, now: float, wall: float,
             trigger: float | None = None) -> Step:
        """Decide and move switches along; see the module docstring.  ``trigger``: when the cause happened."""
        trigger = now if trigger is None else trigger
        probe_now = False
        deadlines: list[float] = []
        for g in self.groups.values():
            self._judge_check(g, now)
            cands = self.candidates(g.family, model, device, now, wall)
            self._track_penalties(g, cands, now)
            # The first choice waits until every gateway answered or had the time to: otherwise the
            # quickest to answer wins, and a planned switch to the best follows a hold later.
            deciding = g.state.chosen is not None or all(c.alive is not None for c in cands)
            if synced and self.adopted and deciding:
                holder = g.holder  # before the choice moves
                g.state, switch, deadline = select(g.state, cands, now, self.config.hysteresis)
                if deadline is not None:
                    deadlines.append(deadline)
                if switch is not None:
                    g.history.append(switch)
                    self.causes[switch.cause] += 1
                    probe_now |= self._begin(g, holder, switch, now, trigger)
            probe_now |= self._advance(g, model, now, trigger, deadlines)
        for p in (p for g in self.groups.values() for p in g.penalties.values()):
            if p.fit_since is not None:
                deadlines.append(p.fit_since + p.duration)
        return Step(probe_now, min(deadlines, default=None))

    def _begin(self, g: Group, holder: str | None, switch: Switch, now: float, trigger: float) -> bool:
        """Start carrying out a switch away from ``holder``; True when the gateways must be told at once."""
        g.transition = None
        g.pending = None
        if switch.new == holder:
            return True  # back to the gateway that still holds the prefixes: nothing to move
        if holder is not None and switch.cause not in IMMEDIATE and self.alive(holder, now):
            if holder != switch.old:
                switch = replace(switch, old=holder)
            g.transition = Transition(switch, PREPARE, now, now)
            return True
        g.pending = (switch, trigger, None)
        return True

    def _advance(self, g: Group, model: TopologyModel, now: float, trigger: float, deadlines: list[float]) -> bool:
        """Move a planned switch to its next phase when it may; True when roles changed."""
        t = g.transition
        if t is None:
            return False
        old, new = t.switch.old or "", t.switch.new
        if self.alive(old, now) is not True:
            # Nothing left to make before breaking: switch at once, as for a failure.
            g.transition = Transition(t.switch, WRITE, now, t.began)
            g.pending = (t.switch, trigger, None)
            return True
        if t.phase == PREPARE:
            # The return path through the mesh: the new gateway's standby announcement, or our own (then the
            # new gateway routes nothing for us until it is primary, so as not to hide ours).
            ready = self.probes[new].announced[FAMILIES.index(g.family)] >= ROLE_STANDBY and (
                self.announcement_seen(new, g.family, model) or self.own_announcement(g.family, model))
            if ready or now - t.since >= STANDBY_TIMEOUT:
                g.transition = Transition(t.switch, RELEASE, now, t.began)
                deadlines.append(now + RELEASE_TIMEOUT)
                return True
            deadlines.append(t.since + STANDBY_TIMEOUT)
            return False
        if t.phase == RELEASE:
            released = self.probes[old].announced[FAMILIES.index(g.family)] == ROLE_NONE
            if released and t.released is None:
                t = g.transition = replace(t, released=now)
            settled = t.released is not None and (self.adjacent(old, model) or now - t.released >= RELEASE_SETTLE)
            if settled or now - t.since >= RELEASE_TIMEOUT:
                g.transition = Transition(t.switch, WRITE, now, t.began)
                g.pending = (t.switch, trigger, now - t.began)
                return True
            if t.released is not None:
                deadlines.append(t.released + RELEASE_SETTLE)
            deadlines.append(t.since + RELEASE_TIMEOUT)
        return False

    def adjacent(self, gateway: str, model: TopologyModel) -> bool:
        """Is the gateway our Babel neighbour (its own route to its mesh address comes straight from it)?"""
        gw = self.gateway(gateway)
        if gw is None or gw.mesh is None:
            return True  # nothing to tell by: do not wait
        return any(r.refmetric == 0 and r.reachable for r in model.routes_for(gw.mesh))

    def written(self, ok: bool, now: float) -> list[Done]:
        """The runner wrote the desired device (or failed to): the switches waiting for it are done."""
        done = []
        for g in self.groups.values():
            if g.pending is None:
                continue
            switch, trigger, prepare = g.pending
            g.pending = None
            g.transition = None
            planned = prepare is not None
            outage = None
            if not planned and switch.old is not None:
                last = self.probes[switch.old].last_ack if switch.old in self.probes else None
                outage = now - last if last is not None and switch.cause != "check" else None
            reaction = max(0.0, now - trigger)
            if ok:
                self.reactions.append(reaction)
                if prepare is not None:
                    self.prepares.append(prepare)
            done.append(Done(g.family, switch, planned, ok, reaction, prepare, outage))
        return done

    def on_device(self, device: Device, now: float) -> Switch | None:
        """A device read.  The first one adopts its holders as the choice (no write, no packet lost)."""
        if self.adopted:
            return None
        self.adopted = True
        by_key = {gw.public_key: gw.name for gw in self.config.gateways}
        adopted = None
        for g in self.groups.values():
            owners = [by_key[p.public_key] for p in device.peers
                      if p.public_key in by_key and set(g.prefixes) <= p.allowed_ips]
            if len(owners) != 1:
                continue
            switch = Switch(None, owners[0], f"adopted: the device already steers "
                            f"{', '.join(map(str, g.prefixes))} to {owners[0]}", now, cause="adopted")
            g.state = SelectorState(owners[0], None, 0.0, switch, 1)
            g.history.append(switch)
            self.causes["adopted"] += 1
            adopted = switch
        return adopted

    # -- desired WireGuard state ----------------------------------------------

    def desired(self) -> Device | None:
        """Every gateway a peer with its control address; each group's prefixes on its holder.

        None until the device was read once: what it holds is adopted, never overwritten blind.
        """
        if not self.adopted:
            return None
        peers = []
        for gw in self.config.gateways:
            allowed = {host_prefix(gw.control)}
            for g in self.groups.values():
                if g.holder == gw.name:
                    allowed |= set(g.prefixes)
            peers.append(
                Peer(
                    public_key=gw.public_key,
                    endpoint=gw.endpoint,
                    allowed_ips=frozenset(allowed),
                    persistent_keepalive=self.config.keepalive,
                )
            )
        return Device(
            name=self.config.interface,
            listen_port=self.config.listen_port,
            private_key=self.config.keys.private,
            peers=tuple(peers),
        )

    def gateway(self, name: str) -> GatewayCandidate | None:
        """The candidate called ``name``."""
        return next((g for g in self.config.gateways if g.name == name), None)

    @property
    def chosen(self) -> dict[int, str | None]:
        """The choice per family."""
        return {f: g.state.chosen for f, g in self.groups.items()}
