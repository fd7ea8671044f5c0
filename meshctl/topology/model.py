"""The topology model: one babeld's view of the mesh, on networkx.

Theory of operation
-------------------
State is kept in dicts keyed on *stable* identities (babeld's ids are heap
addresses, reused after a flush): interfaces by name, neighbours by
(address, interface), routes by (prefix, source prefix, next hop, interface),
exported routes by (prefix, source prefix).  Each event updates one dict
entry and the affected part of :attr:`TopologyModel.graph` in O(1), so a
storm of ``change route`` lines costs little.

The graph is a :class:`networkx.MultiDiGraph` whose nodes are routers, named by
router id, and whose edges are neighbour links from this router, keyed by
interface.  A neighbour's router id is not in the neighbour line; it is
learnt from the route that neighbour originates itself (refmetric 0).  Until
then the neighbour's node is named ``ADDRESS%INTERFACE``.

No I/O and no clock here: :class:`MeshView` swaps in a fresh model after each
resync, so a half-received dump is never visible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx

from meshctl.babel import events as ev

INFINITY = ev.INFINITY

NeighbourKey = tuple[ev.Address, str]
RouteKey = tuple[ev.Prefix, ev.Prefix, ev.Address, str]
XrouteKey = tuple[ev.Prefix, ev.Prefix]


@dataclass(frozen=True, slots=True)
class Interface:
    """A babeld interface."""

    name: str
    up: bool
    ipv6: ev.Address | None
    ipv4: ev.Address | None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A Babel neighbour as babeld reports it."""

    address: ev.Address
    interface: str
    reach: int
    ureach: int
    rxcost: int
    txcost: int
    cost: int
    rtt: float | None
    rttcost: int | None

    @property
    def key(self) -> NeighbourKey:
        """Stable identity."""
        return (self.address, self.interface)

    @property
    def reachable(self) -> bool:
        """False once babeld gives the link cost 65535."""
        return self.cost < INFINITY


@dataclass(frozen=True, slots=True)
class Route:
    """A route babeld learnt (selected or not)."""

    prefix: ev.Prefix
    src_prefix: ev.Prefix
    router_id: str
    metric: int
    refmetric: int
    via: ev.Address
    interface: str
    installed: bool

    @property
    def key(self) -> RouteKey:
        """Stable identity."""
        return (self.prefix, self.src_prefix, self.via, self.interface)

    @property
    def neighbour(self) -> NeighbourKey:
        """The neighbour this route goes through."""
        return (self.via, self.interface)

    @property
    def reachable(self) -> bool:
        """metric 65535 means unreachable, even when ``installed``."""
        return self.metric < INFINITY


@dataclass(frozen=True, slots=True)
class Xroute:
    """A route this node exports (redistributes) into Babel."""

    prefix: ev.Prefix
    src_prefix: ev.Prefix
    metric: int


@dataclass(frozen=True, slots=True)
class SelfInfo:
    """Who this babeld is, from its banner."""

    router_id: str = ""
    host: str = ""
    version: str = ""


def neighbour_label(key: NeighbourKey) -> str:
    """Graph node name for a neighbour whose router id is not known yet."""
    return f"{key[0]}%{key[1]}"


class TopologyModel:
    """What one babeld knows, kept current from babel events."""

    def __init__(self, me: SelfInfo | None = None) -> None:
        self.me = me or SelfInfo()
        self.interfaces: dict[str, Interface] = {}
        self.neighbours: dict[NeighbourKey, Neighbour] = {}
        self.routes: dict[RouteKey, Route] = {}
        self.xroutes: dict[XrouteKey, Xroute] = {}
        self.graph: nx.MultiDiGraph = nx.MultiDiGraph()
        self._by_prefix: dict[ev.Prefix, set[RouteKey]] = defaultdict(set)
        self._by_router: dict[str, set[RouteKey]] = defaultdict(set)
        self._neighbour_router: dict[NeighbourKey, str] = {}
        self.events_applied = 0
        if self.me.router_id:
            self._ensure_router(self.me.router_id, local=True)

    # -- updating -------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        """Apply one table update; other events are ignored."""
        if isinstance(event, ev.RouteUpdate):
            self._route(event)
        elif isinstance(event, ev.NeighbourUpdate):
            self._neighbour(event)
        elif isinstance(event, ev.XrouteUpdate):
            self._xroute(event)
        elif isinstance(event, ev.InterfaceUpdate):
            self._interface(event)
        else:
            return
        self.events_applied += 1

    def apply_all(self, events: Iterable[ev.Event]) -> None:
        """Apply many events in order."""
        for event in events:
            self.apply(event)

    def _interface(self, e: ev.InterfaceUpdate) -> None:
        if e.kind is ev.Kind.FLUSH:
            self.interfaces.pop(e.name, None)
        else:
            self.interfaces[e.name] = Interface(e.name, e.up, e.ipv6, e.ipv4)

    def _neighbour(self, e: ev.NeighbourUpdate) -> None:
        key = e.key
        if e.kind is ev.Kind.FLUSH:
            if self.neighbours.pop(key, None) is not None:
                self._unlink(key)
                self._neighbour_router.pop(key, None)
            return
        n = Neighbour(e.address, e.interface, e.reach, e.ureach, e.rxcost, e.txcost, e.cost, e.rtt, e.rttcost)
        if self.neighbours.get(key) == n:
            return  # babeld repeats identical change lines; nothing to do
        self.neighbours[key] = n
        self._link(key)

    def _route(self, e: ev.RouteUpdate) -> None:
        key = e.key
        old = self.routes.get(key)
        if e.kind is ev.Kind.FLUSH:
            if old is None:
                return
            del self.routes[key]
            self._drop_index(old)
            return
        route = Route(e.prefix, e.src_prefix, e.router_id, e.metric, e.refmetric, e.via, e.interface, e.installed)
        if old == route:
            return
        if old is not None and old.router_id != route.router_id:
            self._drop_index(old)
        self.routes[key] = route
        self._by_prefix[route.prefix].add(key)
        self._by_router[route.router_id].add(key)
        node = self._ensure_router(route.router_id)
        node.setdefault("prefixes", set()).add(route.prefix)
        if route.refmetric == 0 and self._neighbour_router.get(route.neighbour) != route.router_id:
            # The neighbour originates this route itself: that is its router id.
            linked = route.neighbour in self.neighbours
            if linked:
                self._unlink(route.neighbour)
            self._neighbour_router[route.neighbour] = route.router_id
            if linked:
                self._link(route.neighbour)

    def _xroute(self, e: ev.XrouteUpdate) -> None:
        if e.kind is ev.Kind.FLUSH:
            self.xroutes.pop(e.key, None)
        else:
            self.xroutes[e.key] = Xroute(e.prefix, e.src_prefix, e.metric)

    def _drop_index(self, route: Route) -> None:
        keys = self._by_prefix.get(route.prefix)
        if keys is not None:
            keys.discard(route.key)
            if not keys:
                del self._by_prefix[route.prefix]
        keys = self._by_router.get(route.router_id)
        if keys is not None:
            keys.discard(route.key)
            if not keys:
                del self._by_router[route.router_id]
        still = any(self.routes[k].router_id == route.router_id for k in self._by_prefix.get(route.prefix, ()))
        if not still and self.graph.has_node(route.router_id):
            self.graph.nodes[route.router_id].get("prefixes", set()).discard(route.prefix)
        self._maybe_drop_node(route.router_id)

    # -- graph upkeep ---------------------------------------------------

    def _ensure_router(self, name: str, local: bool = False) -> dict:
        if not self.graph.has_node(name):
            self.graph.add_node(name, kind="router", local=local, prefixes=set())
        attrs: dict = self.graph.nodes[name]
        return attrs

    def _node_for(self, key: NeighbourKey) -> str:
        return self._neighbour_router.get(key) or neighbour_label(key)

    def _self_node(self) -> str:
        return self.me.router_id or "self"

    def _unlink(self, key: NeighbourKey) -> None:
        me = self._self_node()
        for node in (self._neighbour_router.get(key), neighbour_label(key)):
            if node and self.graph.has_edge(me, node, key=key[1]):
                self.graph.remove_edge(me, node, key=key[1])
                self._maybe_drop_node(node)

    def _link(self, key: NeighbourKey) -> None:
        n = self.neighbours[key]
        me = self._self_node()
        target = self._node_for(key)
        placeholder = neighbour_label(key)
        if target != placeholder and self.graph.has_node(placeholder):
            self.graph.remove_node(placeholder)
        if not self.graph.has_node(me):
            self._ensure_router(me, local=True)
        if not self.graph.has_node(target):
            self.graph.add_node(target, kind="router" if target != placeholder else "neighbour", local=False, prefixes=set())
        self.graph.add_edge(
            me,
            target,
            key=n.interface,
            address=n.address,
            interface=n.interface,
            reach=n.reach,
            rxcost=n.rxcost,
            txcost=n.txcost,
            cost=n.cost,
            rtt=n.rtt,
            rttcost=n.rttcost,
        )

    def _maybe_drop_node(self, node: str) -> None:
        if (
            self.graph.has_node(node)
            and node != self._self_node()
            and self.graph.degree(node) == 0
            and node not in self._by_router
        ):
            self.graph.remove_node(node)

    # -- queries --------------------------------------------------------

    def neighbour_router_id(self, key: NeighbourKey) -> str | None:
        """The router id behind a neighbour, once learnt."""
        return self._neighbour_router.get(key)

    def routes_for(self, prefix: ev.Prefix) -> list[Route]:
        """Every route to exactly ``prefix``, best metric first."""
        keys = self._by_prefix.get(prefix, ())
        return sorted((self.routes[k] for k in keys), key=lambda r: (r.metric, str(r.via), r.interface))

    def installed_route(self, prefix: ev.Prefix) -> Route | None:
        """The route babeld installed for ``prefix`` (None if none, or unreachable)."""
        for route in self.routes_for(prefix):
            if route.installed and route.reachable:
                return route
        return None

    def installed_routes(self) -> dict[ev.Prefix, Route]:
        """The installed, reachable route per prefix."""
        out: dict[ev.Prefix, Route] = {}
        for prefix in self._by_prefix:
            route = self.installed_route(prefix)
            if route is not None:
                out[prefix] = route
        return out

    def metrics_by_neighbour(self, target: str | ev.Prefix) -> dict[NeighbourKey, int]:
        """Best metric toward a router id or a prefix, through each neighbour.

        Unreachable paths are reported as 65535 so a caller sees them go.
        """
        keys = self._by_router.get(target, ()) if isinstance(target, str) else self._by_prefix.get(target, ())
        best: dict[NeighbourKey, int] = {}
        for key in keys:
            route = self.routes[key]
            hop = route.neighbour
            best[hop] = min(best.get(hop, INFINITY), route.metric)
        return best

    def best_metric(self, target: str | ev.Prefix) -> int:
        """Lowest metric toward a router id or prefix (65535 if none)."""
        return min(self.metrics_by_neighbour(target).values(), default=INFINITY)

    def routers(self) -> dict[str, set[ev.Prefix]]:
        """Every router id known, with the prefixes it originates."""
        out: dict[str, set[ev.Prefix]] = {}
        for rid, keys in self._by_router.items():
            out[rid] = {self.routes[k].prefix for k in keys}
        return out


class MeshView:
    """Holds the current model and rebuilds it on every babeld (re)sync.

    Implements :class:`babel.connection.Sink`.  While a sync is in progress the
    previous model stays visible; the fresh one replaces it in one step when
    babeld's full table has arrived.
    """

    def __init__(self) -> None:
        self.model = TopologyModel()
        self.synced = False
        self.syncs = 0
        self.last_lost = ""
        self._staging: TopologyModel | None = None
        #: Called (no arguments) after the live model changed; keep them quick.
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def begin_sync(self, banner: ev.Banner) -> None:
        """Start a fresh model for the new session."""
        self._staging = TopologyModel(SelfInfo(banner.router_id, banner.host, banner.version))

    def apply(self, event: ev.Event) -> None:
        """Apply to the model being built, or to the live one."""
        if self._staging is not None:
            self._staging.apply(event)
        else:
            self.model.apply(event)
            self._changed()

    def end_sync(self) -> None:
        """Make the freshly built model the live one."""
        if self._staging is not None:
            self.model = self._staging
            self._staging = None
        self.synced = True
        self.syncs += 1
        self._changed()

    def connection_lost(self, reason: str) -> None:
        """Keep the last view but mark it stale."""
        self._staging = None
        self.synced = False
        self.last_lost = reason

    def replay(self, events: Iterable[ev.Event]) -> None:
        """Feed a recorded session (banner, table, replies), as the client would."""
        from meshctl.babel.protocol import CommandDone, Ready  # the protocol's own events

        for event in events:
            if isinstance(event, Ready):
                self.begin_sync(event.banner)
            elif isinstance(event, CommandDone):
                self.end_sync()
            else:
                self.apply(event)
