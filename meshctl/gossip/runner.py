"""The asyncio side of controller gossip: describe this node, flood, relay, expire.

Datagrams go to Babel's own neighbours, at their link-local addresses on the
interfaces babeld runs on, so gossip follows the mesh's links and needs no
addresses of its own.  For the same reason only datagrams from a link-local
address on one of babeld's interfaces are taken: the socket listens on
``[::]`` (one socket for interfaces that come and go), and anything from the
underlay (a WAN address, or a link-local one on a non-Babel interface) is
counted as ``underlay`` and dropped before msgpack or Ed25519 see it.  What to keep and relay is decided by
:class:`meshctl.gossip.table.GossipTable`; this layer only moves bytes and keeps time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import networkx as nx

from meshctl.gossip.signing import parse_public
from meshctl.gossip.table import (
    Description,
    GossipError,
    GossipTable,
    Identity,
    NodeInfo,
    UplinkChoice,
    bundle,
    describe_node,
    mesh_graph,
    next_description,
    sign,
    unbundle,
)
from meshctl.recvbuf import RecvBuffer

if TYPE_CHECKING:
    from meshctl.config import GossipConfig
    from meshctl.topology.model import MeshView

log = logging.getLogger("meshctl.gossip")

Address = tuple[str, str]  # (link-local address, interface)
_LINK_LOCAL_HEXTETS = frozenset(f"{x:04x}" for x in range(0xFE80, 0xFEC0))  # fe80::/10
REFRESH_INTERFACES = 0.5  # seconds: the least time between two look-ups of babeld's interfaces on a miss
#: A refresh waits for the next multiple of this on the wall clock before it is relayed, gathering the others
#: of its wave (and copies from other neighbours, who then need none), and its neighbours relay on the same
#: ticks, so what they send us arrives together.  Changes do not wait.  A refresh crossing the mesh's
#: diameter D waits at most D times this, against the two thirds of a lifetime (>= 2 s) it has.
RELAY_HOLD = 0.1
POLL_UPLINKS = 1.0  # seconds: how often a client looks at its uplinks, which change without babeld
#: Seconds between two looks at a model that keeps changing: babeld's chatter changes it every read (RTTs),
#: and a look (describe ourselves, expire, re-arm) each time cost more than the rest of gossip together.
MODEL_LOOK = 0.2
MODEL_STALE = 1.0  # seconds: the latest a change is looked at when babeld says nothing more after it
RECV_SIZE = 65536  # more than a bundle may be (MAX_BUNDLE), so a longer datagram is still seen as one


def is_link_local(addr: tuple) -> bool:
    """An IPv6 link-local source with its interface index: ``(fe80::1%wg0, port, flow, index)``."""
    if len(addr) != 4 or not addr[3]:
        return False
    host = str(addr[0])  # as the kernel wrote it (inet_ntop): lowercase, fe80::/10 always spelled in four digits
    return len(host) > 5 and host[4] == ":" and host[:4] in _LINK_LOCAL_HEXTETS


class _Datagrams:
    """Hands each datagram to the runner as it arrives: no queue and no task wake-up per datagram.

    The loop's own reader on the socket, not a datagram transport: the transport reads each datagram
    into 256 KiB of its own, which grows the heap (see :mod:`meshctl.recvbuf`).
    """

    def __init__(self, runner: GossipRunner, sock: socket.socket) -> None:
        self.runner = runner
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = RecvBuffer(RECV_SIZE)

    def readable(self) -> None:
        try:
            data, addr = self.buffer.recvfrom(self.sock)
        except OSError:  # nothing after all, or an ICMP error for something we sent: Babel will say so
            return
        self.runner.datagram(data, addr, self.loop.time(), time.time())


class GossipRunner:
    """One node's gossip: its own description, the table, the socket."""

    def __init__(self, config: GossipConfig, me: Identity, view: MeshView,
                 uplinks: Callable[[], tuple[UplinkChoice, ...]] = tuple) -> None:
        self.config = config
        self.uplinks = uplinks  # what this node's uplinks make of their gateways now (the map's uplink plane)
        self.me = me
        self.view = view
        self.name = me.name
        self.table = GossipTable(self.name, {n: parse_public(k) for n, k in config.trusted})
        self.own: NodeInfo | None = None
        self.own_seq = time.time_ns()
        self.own_sent = 0.0
        self.known_neighbours: set[Address] = set()
        self.bytes_out = 0
        self.bytes_in = 0
        self.mesh_ifindexes: frozenset[int] = frozenset()
        self._ifindex: dict[str, int] = {}  # babeld's interfaces by name, as last looked up
        self._ifindexes_at = float("-inf")  # loop time of the last look-up
        self._raw: socket.socket | None = None  # sends go straight to it: a datagram needs no flow control
        self._stamp: tuple | None = None  # what _described and _neighbours were made from
        self._described: NodeInfo | None = None
        self._neighbours: set[Address] = set()
        self._has_uplinks = False  # then they are looked at every POLL_UPLINKS
        self.own_sent_wall = 0.0
        self.own_datagram = b""
        self._pending: dict[str, None] = {}  # origins whose refresh waits for the next relay
        self._relay_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sleep: asyncio.Timeout | None = None  # the run loop's wait for its next deadline
        self._stepped = float("-inf")  # loop time of the last step

    # -- what we say ------------------------------------------------------

    def describe(self) -> NodeInfo | None:
        """This node as babeld and the config show it; None until babeld is synced."""
        self._look_again()
        return self._described

    def neighbours(self) -> set[Address]:
        """Babel's reachable neighbours: where floods go."""
        self._look_again()
        return self._neighbours

    def _look_again(self) -> None:
        """Describe ourselves and list the neighbours again, if the model or the uplinks changed since."""
        model = self.view.model
        uplinks = self.uplinks()  # they move without babeld: part of what is compared
        self._has_uplinks = bool(uplinks)
        stamp = (id(model), model.version, self.view.synced, uplinks)
        if stamp != self._stamp:
            self._stamp = stamp
            self._described = describe_node(model, self.view.synced, self.me, uplinks)
            self._neighbours = {(str(addr), ifname) for (addr, ifname), n in model.neighbours.items() if n.reachable}

    def refresh_interfaces(self, now: float) -> None:
        """Look up the indexes of babeld's interfaces (they change when a tunnel is re-created)."""
        self._ifindexes_at = now
        self._ifindex = {}
        for name in self.view.model.interfaces:
            with contextlib.suppress(OSError):
                self._ifindex[name] = socket.if_nametoindex(name)
        self.mesh_ifindexes = frozenset(self._ifindex.values())

    def from_mesh(self, addr: tuple, now: float) -> bool:
        """Did this datagram come from a Babel neighbour's side: link-local, on one of babeld's interfaces?

        A miss looks the interfaces up again, at most twice a second, so a
        tunnel that just came up is not refused for long and a flood cannot
        turn into a storm of look-ups.
        """
        if not is_link_local(addr):
            return False
        if addr[3] in self.mesh_ifindexes:
            return True
        if now - self._ifindexes_at < REFRESH_INTERFACES:
            return False
        self.refresh_interfaces(now)
        return addr[3] in self.mesh_ifindexes

    # -- loops --------------------------------------------------------------

    async def run(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", self.config.port))
        sock.setblocking(False)
        self._raw = sock
        self._loop = loop = asyncio.get_running_loop()
        loop.add_reader(sock, _Datagrams(self, sock).readable)
        self.view.listeners.append(self._model_changed)
        try:
            while True:
                self._stepped = now = loop.time()
                deadline = self.step(now, time.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline) as self._sleep:
                        await loop.create_future()  # only the deadline, which a model change may bring forward
                self._sleep = None
        finally:
            self._sleep = None
            self.view.listeners.remove(self._model_changed)
            if self._relay_timer is not None:
                self._relay_timer.cancel()
            loop.remove_reader(sock)
            sock.close()

    def _model_changed(self) -> None:
        """The model changed: look again now if the last look is :data:`MODEL_LOOK` old, in this wake-up.

        Otherwise the next change after that does it (babeld chatters on, and a
        look of its own would be a wake-up of its own), or :data:`MODEL_STALE`
        after the last look if babeld falls silent.
        """
        sleep, loop = self._sleep, self._loop
        if sleep is None or loop is None:
            return
        now = loop.time()
        soon = now if now - self._stepped >= MODEL_LOOK else self._stepped + MODEL_STALE
        when = sleep.when()
        if when is None or soon < when:
            sleep.reschedule(soon)

    def step(self, now: float, wall: float) -> float:
        """Expire, greet new neighbours, describe ourselves again when due; return when to look next.

        Runs when the model changed (at most every :data:`MODEL_LOOK`) and at
        the next deadline: a refresh slot, an entry's expiry, a cost change's
        wave.  A node with nothing due sleeps, rather than waking
        every second to find nothing to do.
        """
        if self._ifindex.keys() != self.view.model.interfaces.keys():  # a re-created one is caught on a miss
            self.refresh_interfaces(now)
        for origin in self.table.expire(now):
            log.info("gossip: %s's description expired; it leaves the mesh view", origin)
        own = self.describe()
        originated = own is not None and self._due(own, now, wall)
        if originated:
            assert own is not None
            self._originate(own, now, wall)  # to every neighbour, new ones included
        neighbours = self.neighbours()
        for new in neighbours - self.known_neighbours:
            self._sync(new, own=not originated)  # a neighbour that just appeared gets everything we hold
        self.known_neighbours = neighbours
        return self._next_look(now, wall)

    def _due(self, own: NodeInfo, now: float, wall: float) -> bool:
        lifetime = self.config.lifetime
        # The monotonic bound holds if the wall clock jumps back; 1 ms of slack for the two clocks' drift.
        return (wall >= next_description(own, self.own, self.own_sent_wall, lifetime) - 0.001
                or now - self.own_sent >= lifetime / 2)

    def _next_look(self, now: float, wall: float) -> float:
        """Loop time of the next deadline (a model change wakes the loop sooner)."""
        lifetime = self.config.lifetime
        deadlines = [now + lifetime]
        if self.own is not None:
            described = self._described or self.own
            deadlines += [now + next_description(described, self.own, self.own_sent_wall, lifetime) - wall,
                          self.own_sent + lifetime / 2]
        if self.table.entries:
            deadlines.append(min(e.expires for e in self.table.entries.values()))
        if self._has_uplinks:
            deadlines.append(now + POLL_UPLINKS)
        return max(now, min(deadlines))

    def _originate(self, own: NodeInfo, now: float, wall: float) -> None:
        self.own_seq = max(self.own_seq + 1, time.time_ns())
        description = Description(self.name, self.own_seq, wall, self.config.lifetime, own, bundles=True)
        data = sign(description, self.config.key.private)
        self.own, self.own_sent, self.own_sent_wall, self.own_datagram = own, now, wall, data
        for to in self.neighbours():
            self._send(data, to)

    def _sync(self, to: Address, own: bool = True) -> None:
        datagrams = [e.datagram for e in self.table.entries.values()]
        if own and self.own is not None:
            datagrams.append(self.own_datagram)
        self._send_all(datagrams, to, to in self._bundle_takers())

    def _relay(self, origins: Iterable[str]) -> None:
        """Send what we hold of ``origins`` to every neighbour not known to hold it already, bundled where taken."""
        out: dict[Address, list[bytes]] = {}
        neighbours = self.neighbours()
        for origin in origins:
            entry = self.table.entries.get(origin)
            if entry is None:
                continue
            for addr, ifname in neighbours:
                holder = (addr, self._index(ifname))
                if holder not in entry.holders:
                    entry.holders.add(holder)
                    out.setdefault((addr, ifname), []).append(entry.datagram)
        takers = self._bundle_takers() if any(len(d) > 1 for d in out.values()) else set()
        for to, datagrams in out.items():
            self._send_all(datagrams, to, to in takers)

    def _relay_pending(self) -> None:
        self._relay_timer = None
        pending, self._pending = self._pending, {}
        self._relay(pending)

    def _bundle_takers(self) -> set[Address]:
        """The neighbours whose own description says they take bundles."""
        takers = {e.description.node.router_id for e in self.table.entries.values() if e.description.bundles}
        model = self.view.model
        return {(str(key[0]), key[1]) for key in model.neighbours if model.neighbour_router_id(key) in takers}

    def _send_all(self, datagrams: list[bytes], to: Address, bundles: bool) -> None:
        for data in bundle(datagrams) if bundles else datagrams:
            self._send(data, to)

    def _index(self, ifname: str) -> int | None:
        index = self._ifindex.get(ifname)
        if index is None:
            try:
                index = self._ifindex[ifname] = socket.if_nametoindex(ifname)
            except OSError:
                return None  # the interface went away; the neighbour with it
        return index

    def _send(self, data: bytes, to: Address) -> None:
        """One datagram, straight to the socket; one the kernel will not take now is lost, as any may be."""
        addr, ifname = to
        index = self._index(ifname)
        if index is None or self._raw is None:
            return
        try:
            self._raw.sendto(data, (addr, self.config.port, 0, index))
        except OSError:
            self._ifindex.pop(ifname, None)  # perhaps re-created under a new index: look it up next time
            return
        self.bytes_out += len(data)

    def datagram(self, data: bytes, addr: tuple, now: float, wall: float) -> None:
        """One datagram in: from a Babel neighbour's side, new, and properly signed, it is kept and relayed.

        A change is relayed at once; a refresh waits :data:`RELAY_HOLD` with
        the rest of its wave, and goes only to neighbours that have not sent
        us a copy meanwhile.
        """
        if not self.from_mesh(addr, now):  # (address, port, flow, scope)
            self.table.rejected["underlay"] += 1
            return
        self.bytes_in += len(data)
        try:
            datagrams = unbundle(data)
        except GossipError as exc:
            self.table.rejected[exc.reason] += 1
            return
        source = (str(addr[0]).split("%", 1)[0], addr[3])
        changed = []
        for one in datagrams:
            taken = self.table.take(one, now, wall, source)
            if taken is None:
                continue
            if taken.changed or self._loop is None:
                changed.append(taken.origin)
                continue
            self._pending[taken.origin] = None
            if self._relay_timer is None:  # on wall-clock ticks shared by the mesh: neighbours relay together
                self._relay_timer = self._loop.call_later(RELAY_HOLD - wall % RELAY_HOLD, self._relay_pending)
        if changed:
            self._relay(changed)

    # -- views --------------------------------------------------------------

    def graph(self) -> nx.MultiDiGraph:
        """The whole mesh: our description and everyone else's."""
        nodes = [d.node for d in self.table.descriptions()]
        if self.own is not None:
            nodes.append(self.own)
        return mesh_graph(nodes)

    def status(self) -> dict[str, Any]:
        return {
            "port": self.config.port,
            "origins": len(self.table.entries),
            "accepted": self.table.accepted,
            "rejected": dict(self.table.rejected),
            "neighbours": len(self.known_neighbours),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
