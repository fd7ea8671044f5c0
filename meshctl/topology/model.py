"""The topology model: one babeld's view of the mesh, on networkx.

Theory of operation
-------------------
State is kept in dicts keyed on *stable* identities (babeld's ids are heap
addresses, reused after a flush): interfaces by name, neighbours by
(address, interface), routes by prefix and then (source prefix, next hop,
interface), exported routes by (prefix, source prefix).  Each event updates
one entry in O(1), so a storm of ``change route`` lines costs little and the
cost of a line does not grow with the table.

Routes are the bulk (300,000 on a big node) and are kept lean: one
:class:`~meshctl.babel.events.Route` tuple each, with addresses as canonical
text, held by its prefix (in a list only when the prefix has several: a
route through each neighbour that offers it, a handful at most), plus the
prefix in its router's set.  About 270 bytes a route with its strings; no
``ipaddress`` object is made or hashed on the way in.

:attr:`TopologyModel.graph` is a :class:`networkx.MultiDiGraph` whose nodes
are routers, named by router id, and whose edges are neighbour links from this
router, keyed by interface.  It is derived from the dicts when asked for and
kept until the next change: the daemon never asks, and a dump of 300,000 routes
should not pay for graph upkeep per line.  A neighbour's router id is not in
the neighbour line; it is learnt from the route that neighbour originates
itself (refmetric 0).  Until then the neighbour's node is named
``ADDRESS%INTERFACE``.

No I/O and no clock here: :class:`MeshView` swaps in a fresh model after each
resync, so a half-received dump is never visible.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import TYPE_CHECKING

from meshctl.babel import events as ev
from meshctl.records import record

if TYPE_CHECKING:
    import networkx as nx

INFINITY = ev.INFINITY
_FLUSH = ev.Kind.FLUSH

Route = ev.Route
RouteKey = ev.RouteKey
NeighbourKey = tuple[ev.Address, str]
XrouteKey = tuple[ev.Prefix, ev.Prefix]


@record
class Interface:
    """A babeld interface."""

    name: str
    up: bool
    ipv6: ev.Address | None
    ipv4: ev.Address | None


@record
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


@record
class Xroute:
    """A route this node exports (redistributes) into Babel."""

    prefix: ev.Prefix
    src_prefix: ev.Prefix
    metric: int


@record
class SelfInfo:
    """Who this babeld is, from its banner."""

    router_id: str = ""
    host: str = ""
    version: str = ""


def neighbour_label(key: NeighbourKey) -> str:
    """Graph node name for a neighbour whose router id is not known yet."""
    return f"{key[0]}%{key[1]}"


def prefix_key(prefix: ev.Prefix | str) -> str:
    """How the model spells a prefix: ``str()`` of its ``ipaddress`` object, as the parser checked it."""
    return prefix if isinstance(prefix, str) else str(prefix)


def prefix_order(prefix: str) -> tuple[bool, bytes, int]:
    """Sort key for a prefix's text, as ``ipaddress`` orders networks: IPv4 before IPv6, then by address
    (packed bytes of one length compare as the numbers do), then by length."""
    address, _, length = prefix.partition("/")
    if ":" in address:
        return (True, socket.inet_pton(socket.AF_INET6, address), int(length))
    return (False, socket.inet_pton(socket.AF_INET, address), int(length))


def _path_order(route: Route) -> tuple[str, int, str, str]:
    return (route.src_text, route.metric, route.via_text, route.interface)


def route_order(route: Route) -> tuple[bool, bytes, int, str, int, str, str]:
    """Sort key for routes: by prefix (:func:`prefix_order`), then source, metric, next hop and interface.
    From the text, at a fraction of the cost of ``ipaddress`` objects."""
    return prefix_order(route.prefix_text) + _path_order(route)


class TopologyModel:
    """What one babeld knows, kept current from babel events."""

    def __init__(self, me: SelfInfo | None = None) -> None:
        self.me = me or SelfInfo()
        self.interfaces: dict[str, Interface] = {}
        self.neighbours: dict[NeighbourKey, Neighbour] = {}
        self.xroutes: dict[XrouteKey, Xroute] = {}
        # prefix -> its route, or a list of its routes when it has several (one per source, next hop and
        # interface).  Most prefixes have one: a list for each was 64 bytes a route, and one more object
        # for every pass of the cycle collector to walk.
        self._prefixes: dict[str, Route | list[Route]] = {}
        self._by_router: dict[str, set[str]] = {}  # router id -> prefixes it has a route to
        self._neighbour_router: dict[tuple[str, str], str] = {}  # (address, interface) -> router id
        self.route_count = 0
        self.events_applied = 0
        #: Bumped by every change that did change something.
        self.version = 0
        #: The route the last route event replaced or removed (None if it added one): for watchers.
        self.replaced: Route | None = None
        self._graph: nx.MultiDiGraph | None = None
        self._graph_version = -1

    # -- updating -------------------------------------------------------

    def apply(self, event: ev.Event) -> bool:
        """Apply one table update; True if it changed anything.  Other events are ignored."""
        kind = type(event)
        if kind is ev.RouteUpdate:
            changed = self._route(event)  # type: ignore[arg-type]
        elif kind is ev.NeighbourUpdate:
            changed = self._neighbour(event)  # type: ignore[arg-type]
        elif kind is ev.XrouteUpdate:
            changed = self._xroute(event)  # type: ignore[arg-type]
        elif kind is ev.InterfaceUpdate:
            changed = self._interface(event)  # type: ignore[arg-type]
        else:
            return False
        self.events_applied += 1
        if changed:
            self.version += 1
        return changed

    def apply_all(self, events: Iterable[ev.Event]) -> None:
        """Apply many events in order."""
        for event in events:
            self.apply(event)

    def _interface(self, e: ev.InterfaceUpdate) -> bool:
        if e.kind is ev.Kind.FLUSH:
            return self.interfaces.pop(e.name, None) is not None
        interface = Interface(e.name, e.up, e.ipv6, e.ipv4)
        if self.interfaces.get(e.name) == interface:
            return False
        self.interfaces[e.name] = interface
        return True

    def _neighbour(self, e: ev.NeighbourUpdate) -> bool:
        key = e.key
        if e.kind is ev.Kind.FLUSH:
            if self.neighbours.pop(key, None) is None:
                return False
            self._neighbour_router.pop((str(key[0]), key[1]), None)
            return True
        n = Neighbour(e.address, e.interface, e.reach, e.ureach, e.rxcost, e.txcost, e.cost, e.rtt, e.rttcost)
        if self.neighbours.get(key) == n:
            return False  # babeld repeats identical change lines; nothing to do
        self.neighbours[key] = n
        return True

    def _route(self, e: ev.RouteUpdate) -> bool:
        route = e.route
        prefix = route.prefix_text
        held = self._prefixes.get(prefix)
        old: Route | None = None
        if held is None:  # a prefix not seen yet: most of a table
            if e.kind is _FLUSH:
                return False
            self._prefixes[prefix] = route
        elif not isinstance(held, list):  # one route to the prefix so far
            if held.via_text == route.via_text and held.interface == route.interface and held.src_text == route.src_text:
                old = held
                if e.kind is _FLUSH:
                    del self._prefixes[prefix]
                    return self._removed(old, ())
                if old == route:
                    return False
                self._prefixes[prefix] = route
            elif e.kind is _FLUSH:
                return False
            else:
                self._prefixes[prefix] = [held, route]
        else:
            at = -1
            for i, r in enumerate(held):
                if r.via_text == route.via_text and r.interface == route.interface and r.src_text == route.src_text:
                    old, at = r, i
                    break
            if e.kind is _FLUSH:
                if old is None:
                    return False
                del held[at]
                if len(held) == 1:
                    self._prefixes[prefix] = held[0]
                return self._removed(old, held)
            if old == route:
                return False
            if old is None:
                held.append(route)
            else:
                held[at] = route
        if old is None:
            self.route_count += 1
            self._index(route)
        elif old.router_id != route.router_id:
            self._index(route)
            self._unindex(old, self._routes_of(prefix))
        if route.refmetric == 0:
            # The neighbour originates this route itself: that is its router id.
            self._neighbour_router[(route.via_text, route.interface)] = route.router_id
        self.replaced = old
        return True

    def _index(self, route: Route) -> None:
        known = self._by_router.get(route.router_id)
        if known is None:
            self._by_router[route.router_id] = {route.prefix_text}
        else:
            known.add(route.prefix_text)

    def _removed(self, old: Route, left: Sequence[Route]) -> bool:
        self._unindex(old, left)
        self.route_count -= 1
        self.replaced = old
        return True

    def _routes_of(self, prefix: str) -> Sequence[Route]:
        """The routes to ``prefix`` (text): none, one, or a list of several."""
        held = self._prefixes.get(prefix)
        if held is None:
            return ()
        return held if isinstance(held, list) else (held,)

    def _unindex(self, gone: Route, left: Sequence[Route]) -> None:
        """``gone`` left its prefix; drop the prefix from its router unless another route keeps it there."""
        if any(r.router_id == gone.router_id for r in left):
            return
        prefixes = self._by_router.get(gone.router_id)
        if prefixes is not None:
            prefixes.discard(gone.prefix_text)
            if not prefixes:
                del self._by_router[gone.router_id]

    def _xroute(self, e: ev.XrouteUpdate) -> bool:
        if e.kind is ev.Kind.FLUSH:
            return self.xroutes.pop(e.key, None) is not None
        xroute = Xroute(e.prefix, e.src_prefix, e.metric)
        if self.xroutes.get(e.key) == xroute:
            return False
        self.xroutes[e.key] = xroute
        return True

    # -- the graph, derived ---------------------------------------------

    @property
    def graph(self) -> nx.MultiDiGraph:
        """Routers and this router's neighbour links, built from the tables on demand (see the module doc)."""
        if self._graph is None or self._graph_version != self.version:
            self._graph = self._build_graph()
            self._graph_version = self.version
        return self._graph

    def _build_graph(self) -> nx.MultiDiGraph:
        import networkx as nx  # the daemon never draws; a dump or an export does

        graph = nx.MultiDiGraph()
        me = self.me.router_id or "self"
        if self.me.router_id or self.neighbours:
            graph.add_node(me, kind="router", local=True, prefixes=set())
        for rid, prefixes in self._by_router.items():
            if rid == me:
                graph.nodes[me]["prefixes"] = {ipaddress.ip_network(p) for p in prefixes}
            else:
                graph.add_node(rid, kind="router", local=False, prefixes={ipaddress.ip_network(p) for p in prefixes})
        for key, n in self.neighbours.items():
            learnt = self.neighbour_router_id(key)
            target = learnt or neighbour_label(key)
            if not graph.has_node(target):
                graph.add_node(target, kind="router" if learnt else "neighbour", local=False, prefixes=set())
            graph.add_edge(me, target, key=n.interface, address=n.address, interface=n.interface, reach=n.reach,
                           rxcost=n.rxcost, txcost=n.txcost, cost=n.cost, rtt=n.rtt, rttcost=n.rttcost)
        return graph

    # -- queries --------------------------------------------------------

    @property
    def routes(self) -> dict[RouteKey, Route]:
        """Every route by its key: a new dict on each call, O(routes).  Prefer :meth:`iter_routes`."""
        return {r.key: r for r in self.iter_routes()}

    def sorted_routes(self) -> Iterator[Route]:
        """Every route, in :func:`route_order`: each prefix's key made once, then its few routes sorted."""
        prefixes = self._prefixes
        for prefix in sorted(prefixes, key=prefix_order):
            held = prefixes[prefix]
            if isinstance(held, list):
                yield from sorted(held, key=_path_order)
            else:
                yield held

    def iter_routes(self) -> Iterable[Route]:
        """Every route, grouped by prefix."""
        for held in self._prefixes.values():
            if isinstance(held, list):
                yield from held
            else:
                yield held

    def neighbour_router_id(self, key: NeighbourKey) -> str | None:
        """The router id behind a neighbour, once learnt."""
        return self._neighbour_router.get((str(key[0]), key[1]))

    def routes_for(self, prefix: ev.Prefix | str) -> list[Route]:
        """Every route to exactly ``prefix``, best metric first."""
        routes = self._routes_of(prefix_key(prefix))
        return sorted(routes, key=lambda r: (r.metric, r.via_text, r.interface))

    def installed_route(self, prefix: ev.Prefix | str) -> Route | None:
        """The route babeld installed for ``prefix`` (None if none, or unreachable)."""
        for route in self.routes_for(prefix):
            if route.installed and route.reachable:
                return route
        return None

    def installed_routes(self) -> dict[ev.Prefix, Route]:
        """The installed, reachable route per prefix (keyed by ``ipaddress`` objects: O(routes) to build)."""
        out: dict[ev.Prefix, Route] = {}
        for prefix in self._prefixes:
            route = self.installed_route(prefix)
            if route is not None:
                out[route.prefix] = route
        return out

    def _routes_to(self, target: str | ev.Prefix) -> Iterable[Route]:
        if not isinstance(target, str):
            return self._routes_of(prefix_key(target))
        return (r for p in self._by_router.get(target, ()) for r in self._routes_of(p) if r.router_id == target)

    def metrics_by_neighbour(self, target: str | ev.Prefix) -> dict[NeighbourKey, int]:
        """Best metric toward a router id (a str) or a prefix, through each neighbour.

        Unreachable paths are reported as 65535 so a caller sees them go.
        """
        best: dict[NeighbourKey, int] = {}
        for route in self._routes_to(target):
            hop = route.neighbour
            best[hop] = min(best.get(hop, INFINITY), route.metric)
        return best

    def best_metric(self, target: str | ev.Prefix) -> int:
        """Lowest metric toward a router id (a str) or prefix (65535 if none)."""
        return min((r.metric for r in self._routes_to(target)), default=INFINITY)

    def routers(self) -> dict[str, set[str]]:
        """Every router id known, with the prefixes (as text) it has routes to."""
        return {rid: set(prefixes) for rid, prefixes in self._by_router.items()}

    def router_prefixes(self) -> Mapping[str, AbstractSet[str]]:
        """:meth:`routers` as a read-only view, without a copy of every set: valid until the next change."""
        return MappingProxyType(self._by_router)


class MeshView:
    """Holds the current model and rebuilds it on every babeld (re)sync.

    Implements :class:`babel.connection.Sink`.  While a sync is in progress the
    previous model stays visible; the fresh one replaces it in one step when
    babeld's full table has arrived.

    Two ways to hear of changes, both only for lines that changed something
    (babeld's repeats never get this far): :attr:`listeners` hear of every
    change; :meth:`watch` hears only of routes to given prefixes or from
    given routers, and of every resync, which is what a decision ranked by
    Babel metrics depends on.
    """

    def __init__(self) -> None:
        self.model = TopologyModel()
        self.synced = False
        self.syncs = 0
        self.last_lost = ""
        self._staging: TopologyModel | None = None
        #: Called (no arguments) after the live model changed; keep them quick.
        self.listeners: list[Callable[[], None]] = []
        self._by_prefix: dict[str, list[Callable[[], None]]] = {}
        self._by_router: dict[str, list[Callable[[], None]]] = {}
        self._on_resync: list[Callable[[], None]] = []

    def watch(self, listener: Callable[[], None], prefixes: Iterable[ev.Prefix | str] = (),
              routers: Iterable[str] = ()) -> Callable[[], None]:
        """Call ``listener`` when a route to one of ``prefixes`` or from one of ``routers`` changes, and
        after every resync.  Returns the function that stops it."""
        entries = [(self._by_prefix, prefix_key(p)) for p in prefixes] + [(self._by_router, r) for r in routers]
        for table, key in entries:
            table.setdefault(key, []).append(listener)
        self._on_resync.append(listener)

        def unwatch() -> None:
            for table, key in entries:
                table[key].remove(listener)
                if not table[key]:
                    del table[key]
            self._on_resync.remove(listener)

        return unwatch

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def _route_changed(self, route: Route, old: Route | None) -> None:
        due = self._by_prefix.get(route.prefix_text, []) + self._by_router.get(route.router_id, [])
        if old is not None and old.router_id != route.router_id:
            due += self._by_router.get(old.router_id, [])
        for listener in dict.fromkeys(due):  # once each, in order
            listener()

    def begin_sync(self, banner: ev.Banner) -> None:
        """Start a fresh model for the new session."""
        self._staging = TopologyModel(SelfInfo(banner.router_id, banner.host, banner.version))

    def apply(self, event: ev.Event) -> None:
        """Apply to the model being built, or to the live one."""
        if self._staging is not None:
            self._staging.apply(event)
            return
        if not self.model.apply(event):
            return
        if (self._by_prefix or self._by_router) and isinstance(event, ev.RouteUpdate):
            self._route_changed(event.route, self.model.replaced)
        self._changed()

    def end_sync(self) -> None:
        """Make the freshly built model the live one."""
        if self._staging is not None:
            self.model = self._staging
            self._staging = None
        self.synced = True
        self.syncs += 1
        for listener in list(self._on_resync):
            listener()
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
