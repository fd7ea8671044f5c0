"""One uplink's controller, without I/O: probes, candidates, decisions, desired device.

The asyncio daemon calls in with the clock (``now``: monotonic seconds for
timers, ``wall``: seconds since the epoch for WireGuard handshake times) and
carries out what comes back: datagrams to send, a device to converge to.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from dataclasses import dataclass, field

from meshctl.config import GatewayCandidate, UplinkConfig
from meshctl.topology.model import INFINITY, TopologyModel
from meshctl.uplink.control import ROLE_NONE, ROLE_PRIMARY, Message, Sequence
from meshctl.uplink.policy import CandidateView, SelectorState, Switch, select
from meshctl.wireguard.state import Device, Peer


@dataclass
class ProbeState:
    """Probe bookkeeping for one gateway."""

    sent: dict[int, float] = field(default_factory=dict)  # seq -> send time (bounded)
    last_ack: float | None = None
    rtt: float | None = None
    acks: int = 0
    announced: int = ROLE_NONE  # what the gateway says it does with our addresses

    def alive(self, now: float, timeout: float) -> bool:
        """An ack arrived within ``timeout`` seconds."""
        return self.last_ack is not None and now - self.last_ack <= timeout


def host_prefix(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The /32 or /128 of one address."""
    return ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")


class UplinkController:
    """Chooses the gateway for one uplink and says what WireGuard should look like."""

    def __init__(self, config: UplinkConfig, node_name: str, start_ns: int) -> None:
        self.config = config
        self.node = node_name
        self.state = SelectorState()
        self.probes: dict[str, ProbeState] = {g.name: ProbeState() for g in config.gateways}
        self.seq = Sequence(start_ns)
        self.history: deque[Switch] = deque(maxlen=50)
        self.causes: Counter[str] = Counter()  # switches by Switch.cause, for metrics
        self.reactions: deque[float] = deque(maxlen=1000)  # trigger -> write done, seconds
        self.prepares: deque[float] = deque(maxlen=1000)  # make-before-break waits, seconds
        self.next_deadline: float | None = None
        #: During a planned switch, what each gateway is asked to do with this
        #: client's addresses (the next one is a standby first, so the return
        #: path exists before the switch); otherwise derived from the choice.
        self.transition: dict[str, int] | None = None
        #: During a planned switch, the gateway that keeps the steered prefixes
        #: until the return path is ready (``state.chosen`` is already the new one).
        self.holder: str | None = None

    # -- probes ---------------------------------------------------------

    @property
    def probe_timeout(self) -> float:
        """No ack for this long: the gateway is down."""
        return self.config.probe_interval * (self.config.probe_loss + 0.5)

    def probes_to_send(self, now: float, wall: float) -> list[tuple[GatewayCandidate, Message]]:
        """One probe per gateway; the chosen one is told so."""
        out = []
        for gw in self.config.gateways:
            seq = self.seq.next()
            sent = self.probes[gw.name].sent
            sent[seq] = now
            if len(sent) > 64:
                del sent[min(sent)]
            out.append((gw, Message("probe", self.node, seq, wall, role=self.role_for(gw.name))))
        return out

    def role_for(self, gateway: str) -> int:
        """What ``gateway`` should do with our addresses: primary if chosen, unless a switch is under way."""
        if self.transition is not None:
            return self.transition.get(gateway, ROLE_NONE)
        return ROLE_PRIMARY if gateway == self.state.chosen else ROLE_NONE

    def on_ack(self, gateway: str, message: Message, now: float) -> bool:
        """Record an ack; True when this changes the gateway's liveness."""
        probe = self.probes.get(gateway)
        if probe is None:
            return False
        was = probe.alive(now, self.probe_timeout)
        sent_at = probe.sent.pop(message.seq, None)
        if sent_at is None:
            return False  # not an answer to anything we sent (or a late duplicate)
        probe.last_ack = now
        probe.rtt = now - sent_at
        probe.acks += 1
        probe.announced = message.role
        return not was

    # -- decisions ------------------------------------------------------

    def metric(self, gw: GatewayCandidate, model: TopologyModel) -> int:
        """Best Babel metric toward the gateway (65535 if none)."""
        if gw.mesh is not None:
            return model.best_metric(gw.mesh)
        if gw.router_id is not None:
            return model.best_metric(gw.router_id)
        return INFINITY

    def candidates(self, model: TopologyModel, device: Device | None, now: float, wall: float) -> list[CandidateView]:
        """What the policy needs to know about every gateway."""
        out = []
        for gw in self.config.gateways:
            peer = device.peer(gw.public_key) if device else None
            age = wall - peer.last_handshake if peer and peer.last_handshake else None
            alive = self.probes[gw.name].alive(now, self.probe_timeout)
            if alive and age is None:
                # An ack came back through the tunnel, so a handshake completed; the
                # device read that will show it is at most a poll interval away.
                age = 0.0
            out.append(CandidateView(gw.name, self.metric(gw, model), age, alive))
        return out

    def planned(self, switch: Switch, now: float) -> bool:
        """True when the old gateway still carries traffic: then the new path is made before the old is broken.

        Probes through the tunnel are the test, not Babel: a gateway can look
        unreachable in Babel for a moment (a flushed interface, a metric spike)
        while its tunnel works, and withdrawing it before Babel knows another
        way back to the client drops the replies for ~100 ms.
        """
        probe = self.probes.get(switch.old) if switch.old else None
        return probe is not None and probe.alive(now, self.probe_timeout)

    def announcement_seen(self, gateway: str, model: TopologyModel) -> bool:
        """Does Babel already carry this client's address from ``gateway``?  (The return path exists.)"""
        gw = self.gateway(gateway)
        if gw is None or gw.mesh is None and gw.router_id is None:
            return False
        router = gw.router_id
        if router is None and gw.mesh is not None:
            routes = model.routes_for(gw.mesh)
            router = routes[0].router_id if routes else None
        own = host_prefix(self.config.address.ip)
        return any(r.router_id == router and r.reachable for r in model.routes_for(own))

    def decide(self, model: TopologyModel, device: Device | None, now: float, wall: float) -> Switch | None:
        """Run the policy; remember and return a switch if there is one."""
        self.state, switch, self.next_deadline = select(
            self.state, self.candidates(model, device, now, wall), now, self.config.hysteresis
        )
        if switch is not None:
            self.history.append(switch)
            self.causes[switch.cause] += 1
        return switch

    # -- desired WireGuard state ----------------------------------------

    def desired(self) -> Device:
        """Every gateway a peer with its control address; the steered prefixes on the chosen one (or the holder)."""
        peers = []
        holder = self.holder or self.state.chosen
        for gw in self.config.gateways:
            allowed = {host_prefix(gw.control)}
            if gw.name == holder:
                allowed |= set(self.config.steer)
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
