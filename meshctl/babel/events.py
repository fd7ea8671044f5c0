"""Events produced from babeld's local interface, as frozen dataclasses.

One event per line babeld writes.  Neighbour and route ``id`` fields are
babeld heap addresses: opaque, valid for one connection only, and reused after
a flush, so consumers key on the stable fields instead (see ``key``).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import field
from typing import NamedTuple

from meshctl.records import record

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Extra = tuple[tuple[str, str], ...]

#: babeld's "infinity": a route or neighbour with this metric/cost is unreachable.
INFINITY = 0xFFFF


class Kind(enum.Enum):
    """What happened to the object a line describes."""

    ADD = "add"
    CHANGE = "change"
    FLUSH = "flush"


class Event:
    """Base class of every event.

    A plain class, not a dataclass: it has no fields, is never made itself, and
    every event below is a frozen dataclass of its own.  As a dataclass it would
    cost the daemon's start-up a class build (about 0.5 ms) for methods nothing
    calls.  The empty ``__slots__`` keeps the events' own slots the only storage.
    """

    __slots__ = ()


# --- the banner -----------------------------------------------------------


@record
class ProtocolVersion(Event):
    """``BABEL 1.0``: the local-interface protocol version."""

    version: str


@record
class DaemonVersion(Event):
    """``version babeld-1.12.1``."""

    version: str


@record
class Host(Event):
    """``host NAME``: babeld's host name."""

    name: str


@record
class MyId(Event):
    """``my-id xx:xx:...``: this babeld's router id."""

    router_id: str


# --- replies --------------------------------------------------------------


@record
class Ok(Event):
    """``ok``: end of the banner or success of the oldest pending command."""


@record
class No(Event):
    """``no [message]``: the oldest pending command was refused."""

    message: str = ""


@record
class Bad(Event):
    """``bad``: the oldest pending command could not be parsed or is not allowed."""


# --- table updates --------------------------------------------------------


@record
class InterfaceUpdate(Event):
    """``add|change|flush interface NAME up BOOL [ipv6 ADDR] [ipv4 ADDR]``."""

    kind: Kind
    name: str
    up: bool
    ipv6: Address | None = None
    ipv4: Address | None = None
    extra: Extra = ()


@record
class NeighbourUpdate(Event):
    """``... neighbour ID address A if I reach R ureach U rxcost .. txcost .. [rtt .. rttcost ..] cost C``."""

    kind: Kind
    id: str
    address: Address
    interface: str
    reach: int
    ureach: int
    rxcost: int
    txcost: int
    cost: int
    rtt: float | None = None
    rttcost: int | None = None
    extra: Extra = ()

    @property
    def key(self) -> tuple[Address, str]:
        """Stable identity: babeld's ids are heap addresses and get reused."""
        return (self.address, self.interface)


class Route(NamedTuple):
    """A route as babeld describes it, and as the topology model keeps it.

    Addresses and prefixes are babeld's own text, checked and in Python's
    canonical spelling (``str(ipaddress.ip_network(...))``), so the model
    keys and compares them as strings; the :mod:`ipaddress` objects are made
    only when asked for (:attr:`prefix`, :attr:`src_prefix`, :attr:`via`).
    A table may hold 300,000 of these: as a NamedTuple one is built in about
    0.13 us and compared in C, against 0.8 us for a frozen dataclass (the
    rule elsewhere), and hashing an ``ipaddress`` object was the biggest
    single cost of a dump.
    """

    prefix_text: str
    src_text: str
    router_id: str
    metric: int
    refmetric: int
    via_text: str
    interface: str
    installed: bool

    @property
    def prefix(self) -> Prefix:
        """The destination prefix (a new object on each call)."""
        return ipaddress.ip_network(self.prefix_text)

    @property
    def src_prefix(self) -> Prefix:
        """The source prefix (``0.0.0.0/0`` or ``::/0`` unless source-specific)."""
        return network(self.src_text)

    @property
    def via(self) -> Address:
        """The next hop."""
        return address(self.via_text)

    @property
    def key(self) -> RouteKey:
        """Stable identity (prefix, source prefix, next hop, interface): babeld's ids are heap addresses."""
        return (self.prefix_text, self.src_text, self.via_text, self.interface)

    @property
    def neighbour(self) -> tuple[Address, str]:
        """The neighbour this route goes through, keyed as :attr:`NeighbourUpdate.key`."""
        return (address(self.via_text), self.interface)

    @property
    def reachable(self) -> bool:
        """False for metric 65535, even when babeld says ``installed yes``."""
        return self.metric < INFINITY


RouteKey = tuple[str, str, str, str]


@functools.lru_cache(maxsize=1024)
def address(text: str) -> Address:
    """An address from its canonical text.  Next hops are neighbours' addresses, a few dozen at
    most, so the cache holds every one and never thrashes."""
    return ipaddress.ip_address(text)


@functools.lru_cache(maxsize=1024)
def network(text: str) -> Prefix:
    """A source prefix from its canonical text (nearly always ``0.0.0.0/0`` or ``::/0``)."""
    return ipaddress.ip_network(text)


@record
class RouteUpdate(Event):
    """``... route ID prefix P from S installed yes|no id RID metric M refmetric R via A if I``."""

    kind: Kind
    id: str
    route: Route
    extra: Extra = ()

    @property
    def key(self) -> RouteKey:
        """Stable identity (prefix, source prefix, next hop, interface), as text."""
        return self.route.key


@record
class XrouteUpdate(Event):
    """``... xroute P-S prefix P from S metric M``: a route this node exports."""

    kind: Kind
    id: str
    prefix: Prefix
    src_prefix: Prefix
    metric: int
    extra: Extra = ()

    @property
    def key(self) -> tuple[Prefix, Prefix]:
        """Stable identity (prefix, source prefix)."""
        return (self.prefix, self.src_prefix)


@record
class UnknownLine(Event):
    """A well-formed line of a kind this parser does not know (newer babeld)."""

    line: str


TableUpdate = InterfaceUpdate | NeighbourUpdate | RouteUpdate | XrouteUpdate


@record
class Banner:
    """Everything babeld says before its first ``ok``."""

    protocol: str = ""
    version: str = ""
    host: str = ""
    router_id: str = ""
    extra: tuple[str, ...] = field(default=())
