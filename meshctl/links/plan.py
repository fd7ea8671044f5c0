"""Link automation without I/O: which tunnels a neighbour gets, and where they point.

Theory of operation
-------------------
A neighbour reached over several underlay paths (two uplinks, a radio link
and a wired one, IPv4 and IPv6) gets one WireGuard tunnel per path, each its
own device with its own UDP port and link-local address, all handshaked and
all given to babeld as interfaces.  Babel's hellos then tell within a few
hello intervals which paths are alive, and its metric (the per-path
``rxcost``, plus an RTT penalty on ``type tunnel`` links) picks the one that
carries traffic.  Fail-over is babeld replacing a route between two warm
tunnels: no handshake, no endpoint move.  :func:`desired_paths` says which
tunnels a neighbour should have, from the config and from the addresses the
neighbour advertises in gossip; the runner makes the devices match.

One X25519 key per node serves every tunnel: a WireGuard peer is looked up
by public key *within the device that received the packet*, and the UDP
port picks the device, so the neighbour's key on three devices is three
independent peers, each with its own session, endpoint and roaming.

A neighbour with one tunnel keeps the older scheme, :func:`observe`: the
tunnel moves to the neighbour's next endpoint when babeld declares the
neighbour on it dead (after it had been alive there), or, without babeld's
word, when no packet has come for ``dead_after`` (a persistent keepalive
makes silence mean a dead path).  The session survives the move (the other
end is the same machine), and WireGuard's roaming carries the other side
along with our next packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from meshctl.listen import parse_listen
from meshctl.records import record

if TYPE_CHECKING:
    from meshctl.links.config import LinksConfig, NeighbourConfig

MAX_PATHS = 8  # per neighbour: one digit in interface names, a block of ports for gossip paths

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- one tunnel whose endpoint moves ------------------------------------------


@record
class EndpointState:
    """Where one managed tunnel points, and what was last heard over it."""

    endpoints: tuple[str, ...]
    current: int = 0
    rx_bytes: int = -1  # -1: not read yet
    heard: float = 0.0  # last time rx_bytes grew (or when we started on this endpoint)
    babel_up: bool = False  # babeld has had a live neighbour over the current endpoint
    seen: str | None = None  # the endpoint last seen on the device (ours, or where WireGuard roamed it)

    @property
    def endpoint(self) -> str | None:
        """None while there is none to try (the neighbour calls us, or has advertised nothing yet)."""
        return self.endpoints[self.current] if self.endpoints else None


def observe(state: EndpointState, rx_bytes: int, now: float, dead_after: float,
            babel: bool | None = None) -> tuple[EndpointState, str | None]:
    """Feed one reading; returns the new state and, to move, the endpoint to use.

    ``rx_bytes`` is what the peer has received in all; ``babel`` whether
    babeld has a live neighbour on the tunnel (None: babeld does not run on
    it, or is not synced, so it has no say).  A neighbour babeld saw alive
    here and now calls dead moves the tunnel at once; otherwise only
    ``dead_after`` of silence does.
    """
    if rx_bytes > state.rx_bytes >= 0 or state.rx_bytes < 0 or rx_bytes < state.rx_bytes:
        # grew, first reading, or the device was re-created (counters start again): heard now
        state = replace(state, rx_bytes=rx_bytes, heard=now)
    if babel:
        state = replace(state, babel_up=True) if not state.babel_up else state
    if len(state.endpoints) < 2:
        return state, None
    if babel is False and state.babel_up:
        return _move(state, rx_bytes, now)
    if now - state.heard >= dead_after:
        return _move(state, rx_bytes, now)
    return state, None


def _move(state: EndpointState, rx_bytes: int, now: float) -> tuple[EndpointState, str]:
    nxt = (state.current + 1) % len(state.endpoints)
    return EndpointState(state.endpoints, nxt, rx_bytes, now, False, state.endpoints[nxt]), state.endpoints[nxt]


def roamed(state: EndpointState, endpoint: str | None) -> EndpointState:
    """What the device shows: WireGuard may have moved the peer to a source it heard from.

    Follow it if it is one of ours.  Either way it is a new path, which
    babeld must see alive before its word can move the tunnel again: a
    verdict on the old path that comes late (hellos every few seconds) must
    not undo a move the neighbour has already made.
    """
    if endpoint is None or endpoint == state.seen:
        return state
    state = replace(state, seen=endpoint, babel_up=state.babel_up and state.seen is None)
    if endpoint in state.endpoints and endpoint != state.endpoint:
        state = replace(state, current=state.endpoints.index(endpoint))
    return state


def with_endpoints(state: EndpointState, endpoints: tuple[str, ...]) -> EndpointState:
    """The list changed (gossip): keep pointing where we point if it is still there."""
    if endpoints == state.endpoints:
        return state
    now = state.endpoint
    current = endpoints.index(now) if now is not None and now in endpoints else 0
    return replace(state, endpoints=endpoints, current=current)


# -- one tunnel per path ------------------------------------------------------


@record
class PathPlan:
    """One tunnel to a neighbour, as it should be."""

    interface: str
    listen_port: int
    endpoint: str | None  # None: the neighbour calls us; WireGuard learns its address
    babel: str  # what follows "interface NAME" for babeld
    rxcost: int | None = None
    fwmark: int = 0
    learnt: bool = False  # from gossip, not the config

    def same_device(self, other: PathPlan) -> bool:
        """The WireGuard device can stay as it is (babeld's options aside: they take a flush and a re-add)."""
        return (self.interface, self.listen_port, self.fwmark) == (other.interface, other.listen_port, other.fwmark)


@record
class Refusal:
    """An advertised or configured endpoint that gets no tunnel, and why."""

    endpoint: str
    reason: str


def path_interface(base: str, k: int) -> str:
    """The interface for path ``k`` of a neighbour whose tunnels are named from ``base``."""
    return f"{base[:13]}-{k}"


def gossip_interface(base: str, k: int) -> str:
    """The interface for the path to (or from) the k-th advertised address of a neighbour."""
    return f"{base[:12]}-g{k}"


def interface_name(neighbour: str, prefix: str = "mc-") -> str:
    """A Linux interface name for the tunnel to ``neighbour`` (at most 15 bytes, plain ASCII: no odd characters)."""
    clean = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in neighbour)
    return (prefix + clean)[:15]


def babel_options(base: str, rxcost: int | None) -> str:
    """babeld's interface options for one tunnel: the configured ones, and the path's rxcost."""
    return f"{base} rxcost {rxcost}" if rxcost is not None else base


def endpoint_at(advertised: str, port: int) -> str | None:
    """An advertised ``ADDRESS:PORT`` with our configured port for it (None if not an address)."""
    try:
        host, _ = parse_listen(advertised)
    except ValueError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def routed_through_mesh(endpoint: str, mesh: Iterable[Prefix]) -> bool:
    """Whether ``endpoint``'s address lies in a prefix the mesh routes (a default route aside).

    Such an endpoint would be reached through the tunnels themselves: the
    routing loop that kills a mesh within a minute.
    """
    try:
        address = ipaddress.ip_address(parse_listen(endpoint)[0])
    except ValueError:
        return False
    return any(p.prefixlen > 0 and p.version == address.version and address in p for p in mesh)


def desired_paths(neighbour: NeighbourConfig, links: LinksConfig, advertised: tuple[str, ...] = (),
                  own_advertised: int = 0, mesh: Iterable[Prefix] = ()) -> tuple[tuple[PathPlan, ...], tuple[Refusal, ...]]:
    """The tunnels a per-path neighbour should have, and the endpoints refused.

    Configured paths come as written.  Gossip paths (``from_gossip = "paths"``)
    pair the k-th address each end advertises: both ends make path k (our
    port ``listen_port + k``, theirs ``port + k``) for k below the longer of
    the two lists; where the neighbour advertises no k-th address, our
    tunnel waits for it to call.  An endpoint routed through the mesh gets
    no tunnel.
    """
    mesh = tuple(mesh)
    refused: list[Refusal] = []
    plans: list[PathPlan] = []

    def checked(endpoint: str | None) -> bool:
        if endpoint is not None and routed_through_mesh(endpoint, mesh):
            refused.append(Refusal(endpoint, "routed through the mesh (it would tunnel into itself)"))
            return False
        return True

    for p in neighbour.paths:
        if checked(p.endpoint):
            options = babel_options(p.babel or neighbour.babel or links.babel, p.rxcost)
            plans.append(PathPlan(p.interface, p.listen_port, p.endpoint, options, p.rxcost, p.fwmark))
    if neighbour.from_gossip == "paths":
        theirs = [endpoint_at(a, neighbour.port + k) for k, a in enumerate(advertised[:MAX_PATHS])]
        count = min(MAX_PATHS, max(len(theirs), own_advertised))
        for k in range(count):
            endpoint = theirs[k] if k < len(theirs) else None
            if checked(endpoint):
                plans.append(PathPlan(gossip_interface(neighbour.interface, k), neighbour.listen_port + k, endpoint,
                                      neighbour.babel or links.babel, learnt=True))
    return tuple(plans), tuple(refused)


def single_endpoints(neighbour: NeighbourConfig, advertised: tuple[str, ...] = (),
                     mesh: Iterable[Prefix] = ()) -> tuple[str, ...]:
    """The endpoints a one-tunnel neighbour's tunnel goes round: configured first, then advertised ones."""
    mesh = tuple(mesh)
    out = list(neighbour.endpoints)
    if neighbour.from_gossip == "endpoints":
        for a in advertised:
            e = endpoint_at(a, neighbour.port)
            if e is not None and e not in out:
                out.append(e)
    return tuple(e for e in out if not routed_through_mesh(e, mesh))
