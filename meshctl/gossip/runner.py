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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import networkx as nx

from meshctl.gossip.signing import parse_public
from meshctl.gossip.table import (
    Description,
    GossipTable,
    Identity,
    NodeInfo,
    UplinkChoice,
    describe_node,
    mesh_graph,
    originate_due,
    sign,
)

if TYPE_CHECKING:
    from meshctl.config import GossipConfig
    from meshctl.topology.model import MeshView

log = logging.getLogger("meshctl.gossip")

Address = tuple[str, str]  # (link-local address, interface)
_LINK_LOCAL_HEXTETS = frozenset(f"{x:04x}" for x in range(0xFE80, 0xFEC0))  # fe80::/10
REFRESH_INTERFACES = 0.5  # seconds: the least time between two look-ups of babeld's interfaces on a miss


def is_link_local(addr: tuple) -> bool:
    """An IPv6 link-local source with its interface index: ``(fe80::1%wg0, port, flow, index)``."""
    if len(addr) != 4 or not addr[3]:
        return False
    host = str(addr[0])  # as the kernel wrote it (inet_ntop): lowercase, fe80::/10 always spelled in four digits
    return len(host) > 5 and host[4] == ":" and host[:4] in _LINK_LOCAL_HEXTETS


class _Datagrams(asyncio.DatagramProtocol):
    """Hands each datagram to the runner as it arrives: no queue and no task wake-up per datagram."""

    def __init__(self, runner: GossipRunner) -> None:
        self.runner = runner
        self.loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.runner.datagram(data, addr, self.loop.time(), time.time())

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for something we sent: the neighbour is gone, Babel will say so


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
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        try:
            await self._tick_loop()
        finally:
            transport.close()

    async def _tick_loop(self) -> None:
        """Every second: expire, greet new neighbours, re-describe ourselves when needed."""
        loop = asyncio.get_running_loop()
        while True:
            now, wall = loop.time(), time.time()
            if self._ifindex.keys() != self.view.model.interfaces.keys():  # a re-created one is caught on a miss
                self.refresh_interfaces(now)
            for origin in self.table.expire(now):
                log.info("gossip: %s's description expired; it leaves the mesh view", origin)
            own = self.describe()
            if own is not None and originate_due(own, self.own, now - self.own_sent, self.config.lifetime):
                self._originate(own, now, wall)
            neighbours = self.neighbours()
            for new in neighbours - self.known_neighbours:
                self._sync(new)  # a neighbour that just appeared gets everything we hold
            self.known_neighbours = neighbours
            await asyncio.sleep(1.0)

    def _originate(self, own: NodeInfo, now: float, wall: float) -> None:
        self.own_seq = max(self.own_seq + 1, time.time_ns())
        description = Description(self.name, self.own_seq, wall, self.config.lifetime, own)
        data = sign(description, self.config.key.private)
        self.own, self.own_sent, self.own_datagram = own, now, data
        self._flood(data, exclude=None)

    def _sync(self, to: Address) -> None:
        datagrams = [e.datagram for e in self.table.entries.values()]
        if self.own is not None:
            datagrams.append(self.own_datagram)
        for data in datagrams:
            self._send(data, to)

    def _flood(self, data: bytes, exclude: str | None) -> None:
        for addr, ifname in self.neighbours():
            if addr != exclude:
                self._send(data, (addr, ifname))

    def _send(self, data: bytes, to: Address) -> None:
        """One datagram, straight to the socket; one the kernel will not take now is lost, as any may be."""
        addr, ifname = to
        index = self._ifindex.get(ifname)
        if index is None:
            try:
                index = self._ifindex[ifname] = socket.if_nametoindex(ifname)
            except OSError:
                return  # the interface went away; the neighbour with it
        if self._raw is None:
            return
        try:
            self._raw.sendto(data, (addr, self.config.port, 0, index))
        except OSError:
            self._ifindex.pop(ifname, None)  # perhaps re-created under a new index: look it up next time
            return
        self.bytes_out += len(data)

    def datagram(self, data: bytes, addr: tuple, now: float, wall: float) -> None:
        """One datagram in: from a Babel neighbour's side, new, and properly signed, it is kept and relayed."""
        if not self.from_mesh(addr, now):  # (address, port, flow, scope)
            self.table.rejected["underlay"] += 1
            return
        self.bytes_in += len(data)
        relay = self.table.receive(data, now, wall)
        if relay is not None:
            self._flood(relay, exclude=str(addr[0]).split("%", 1)[0])

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
