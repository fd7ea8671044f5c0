"""The asyncio side of the gateway role: datagrams, kernel routes, the device, the watchdog.

Decisions are :class:`meshctl.uplink.gateway.GatewayController`'s; this layer
reads, feeds, and carries out the announcements and withdrawals it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshctl.config import Prefix
from meshctl.counters import Counters
from meshctl.topology.model import MeshView
from meshctl.udp import BoundStream, ifindex
from meshctl.uplink.control import MAX_DATAGRAM, ROLE_NAMES, ROLE_NONE, ROLE_PRIMARY, ROLE_STANDBY
from meshctl.uplink.gateway import (
    Action,
    Announce,
    GatewayController,
    MeshPath,
    Withdraw,
    announced_by_client,
    mesh_path,
)
from meshctl.uplink.gateway_config import ClientEntry, GatewayConfig
from meshctl.uplink.routes import RouteError, announce, control_routes, ours, withdraw
from meshctl.uplink.watchdog import Watchdog, demotions
from meshctl.wireguard.backend import Backend, converge
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError

log = logging.getLogger("meshctl.daemon")

DEVICE_POLL = 1.0  # seconds between WireGuard reads
HANDOFF_SECONDS = 5.0  # each step of a handed-off route's end: through the mesh, demoted, deleted


class GatewayRunner:
    """Serves clients: answers probes, announces the clients that chose this gateway."""

    def __init__(self, config: GatewayConfig, node: str, view: MeshView, backend: Backend, counters: Counters,
                 watchdog: bool = True, fresh: Callable[[], None] | None = None) -> None:
        self.config = config
        self.view = view
        # Brings the model up to date before a probe is answered: babeld's chatter is read on a beat
        # while idle, and the probes' own wake-ups are the cheapest time to read it.
        self.fresh = fresh
        self.backend = backend
        self.counters = counters
        self.ctl = GatewayController(config, node)
        self.clients = self.ctl.clients
        self.device_ok = False
        self.sock: BoundStream | None = None
        self.watchdog = Watchdog() if watchdog else None
        self.routes: dict[Prefix, tuple[str | None, str]] = {}  # what we announce now: prefix -> (via, device)
        #: Withdrawn but still routed through the mesh for a while: prefix -> (hand-off number, path).  A
        #: timer acts only on the hand-off that set it: a prefix re-announced and handed off again is not
        #: the earlier hand-off's to end.
        self.demoted: dict[Prefix, tuple[int, MeshPath]] = {}
        self.handoffs = 0
        self.adopted: list[str] = []
        self._routed_index: int | None = None  # the device whose IPv6 control routes are in place

    def desired(self) -> Device:
        return Device(
            name=self.config.interface,
            listen_port=self.config.listen_port,
            private_key=self.config.keys.private,
            peers=tuple(
                Peer(public_key=c.public_key, endpoint=c.endpoint, allowed_ips=frozenset(c.addresses))
                for c in self.config.clients
            ),
        )

    @property
    def roles(self) -> dict[str, int]:
        """Per client, the strongest role we announce it with (for status and metrics)."""
        out: dict[str, int] = {}
        for (client, _), role in self.ctl.roles.items():
            out[client] = max(out.get(client, ROLE_NONE), role)
        return out

    async def run(self) -> None:
        sock = BoundStream(str(self.config.address.ip), self.config.control_port, self.config.interface,
                           f"gateway {self.config.interface}", MAX_DATAGRAM)
        await sock.open()
        self.sock = sock
        try:
            if self.watchdog is not None:
                await self.watchdog.start()
            await self._adopt()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._device_loop())
                tg.create_task(self._lease_loop())
                tg.create_task(self._serve(sock))
        finally:
            sock.close()
            await asyncio.shield(self._stop())

    async def _adopt(self) -> None:
        """Take over the routes a previous run left (a crash, a restart): kept one lease for their clients."""
        protos = (self.config.route_protocol, self.config.standby_protocol)
        try:
            found = await ours(protos)
        except RouteError as exc:
            log.error("gateway: cannot read the routes a previous run left: %s", exc)
            return
        roles: dict[Prefix, int] = {}
        for prefix, proto, via, dev in found:
            primary = proto == self.config.route_protocol and via is None and dev == self.config.interface
            roles[prefix] = max(roles.get(prefix, ROLE_NONE), ROLE_PRIMARY if primary else ROLE_STANDBY)
            if dev is not None:
                self.routes[prefix] = (via, dev)
        stale = self.ctl.adopt(roles, asyncio.get_running_loop().time())
        for prefix in stale:
            await self._remove(prefix, "no configured client has it")
        kept = sorted({c for (c, _) in self.ctl.roles})
        if kept:
            self.adopted = kept
            log.warning("gateway %s: kept the announcements a previous run left for %s, for one lease (%g s) "
                        "for the client to claim", self.config.interface, ", ".join(kept), self.config.lease)
        await self._arm()

    async def _remove(self, prefix: Prefix, why: str) -> None:
        protos = (self.config.route_protocol, self.config.standby_protocol)
        try:
            await withdraw((prefix,), protos)
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot remove stale route %s: %s", prefix, exc)
            return
        self.routes.pop(prefix, None)
        log.warning("gateway %s: removed stale route %s: %s", self.config.interface, prefix, why)

    async def _device_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                device = await converge(self.backend, self.desired())
                self.ctl.on_device(device, loop.time())
                index = ifindex(self.config.interface)  # once for both: each look-up is three system calls
                if self.sock is not None:
                    await self.sock.check(index)
                if index is not None and index != self._routed_index:
                    await control_routes(tuple(a for c in self.config.clients for a in c.addresses), self.config.interface)
                    self._routed_index = index
                if not self.device_ok:
                    log.info("gateway %s: WireGuard device configured", self.config.interface)
                self.device_ok = True
            except RouteError as exc:
                log.error("gateway %s: %s", self.config.interface, exc)
            except UapiError as exc:
                if self.device_ok:
                    log.error("gateway %s: WireGuard device unreachable: %s", self.config.interface, exc)
                self.counters.backend_errors += 1 if self.device_ok else 0
                self.device_ok = False
            await asyncio.sleep(DEVICE_POLL)

    async def _serve(self, sock: BoundStream) -> None:
        """Answer probes one after the other: what a probe asks of the kernel (routes) is done before its ack.

        Datagrams that came while a restarted gateway adopted its old routes
        waited in the stream's queue, and are answered now, in order.
        """
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await sock.recv()
            if self.fresh is not None:
                self.fresh()
            got = self.ctl.receive(data, addr[0], self.view.model, loop.time(), time.time(), self.view.synced)
            if got.rejected is not None:
                self.counters.rejected[got.rejected] += 1
                continue
            for action in got.actions:
                await self._carry(action)
            if got.ack is not None:
                await sock.send(got.ack, addr)  # after the routes: an ack that says "standby" means it is there

    async def _carry(self, action: Action) -> None:
        if isinstance(action, Announce):
            await self._announce(self.clients[action.client], action.family, action.role)
        elif isinstance(action, Withdraw):
            await self._withdraw(self.clients[action.client], action.family, action.why, action.handoff)
        await self._arm()

    async def _arm(self) -> None:
        """Tell the watchdog what to demote if we die now: each route, through the mesh to a client next to us.

        Through the mesh, because the client will leave us for another
        gateway, and its WireGuard drops what our tunnel still delivers then;
        but only to a client next to us: through a relay, the relay may route
        it straight back until the demotion has spread (see :meth:`_withdraw`).
        """
        if self.watchdog is None:
            return
        routes = []
        for prefix, (via, dev) in sorted(self.routes.items(), key=lambda kv: str(kv[0])):
            owner = next((c for c in self.config.clients if prefix in c.addresses), None)
            path = self._mesh_path(owner) if owner is not None and via is None else None
            direct = path is not None and path.direct
            routes.append((str(prefix), path.via, path.interface) if path and direct else (str(prefix), via, dev))
        await self.watchdog.arm(demotions(routes, self.config.standby_protocol))

    async def _announce(self, client: ClientEntry, family: int, role: int) -> None:
        """Route the client's addresses for babeld to redistribute: into our tunnel when chosen.

        As a standby (the client is about to switch here) the route goes
        through the mesh toward the client, with ``standby_protocol``, which
        babeld redistributes at a high metric: ready for the switch, but
        attracting nothing.  It must attract nothing: a relay between us and
        the client routes the client's address by Babel, and would send it
        straight back to a standby announced at the normal metric (a loop,
        seen with tcpdump).  The mesh's way back to a client that no gateway
        serves yet is the client's own announcement of its address (babeld's
        ``redistribute local ... allow`` on the client, at the same metric
        as a gateway's).  Where Babel shows that announcement, a standby
        behind a relay routes nothing at all: at the standby metric it would
        only hide the client's own route here (babeld announces a prefix it
        redistributes instead of the route it learnt for it), and the mesh
        would lose its way back through us while the old gateway lets go
        (traced on verify2: the upstream kept the old gateway's demoted
        route, or took a stale one that looped back to it, until the write).
        """
        prefixes = self.ctl.addresses(client.name, family)
        path = self._mesh_path(client) if role == ROLE_STANDBY else None
        for p in prefixes:
            self.demoted.pop(p, None)  # a pending hand-off's timers must not touch it now
        try:
            # A replace: whatever route of ours was there (primary, standby, demoted) is overwritten in one step.
            if role == ROLE_PRIMARY:
                await announce(prefixes, self.config.interface, self.config.route_protocol)
                what, via, dev = "primary: chosen by it", None, self.config.interface
            elif path is not None and not path.direct and all(
                    announced_by_client(self.view.model, p, client.mesh) for p in prefixes):
                await withdraw(prefixes, (self.config.route_protocol, self.config.standby_protocol))
                for p in prefixes:
                    self.routes.pop(p, None)
                log.warning("gateway %s: %s (%s) is about to switch here: standing by with no route of ours, "
                            "the mesh's way back is its own announcement", self.config.interface, client.name,
                            ", ".join(map(str, prefixes)))
                return
            elif path is not None:
                proto = self.config.route_protocol if path.direct else self.config.standby_protocol
                await announce(prefixes, path.interface, proto, via=path.via)
                what, via, dev = (f"standby through the mesh (via {path.via} on {path.interface}"
                                  f"{', the client itself' if path.direct else ', at the standby metric'}): "
                                  "it is about to switch here"), path.via, path.interface
            else:
                await announce(prefixes, self.config.interface, self.config.standby_protocol)
                what, via, dev = "standby (high metric): it is about to switch here", None, self.config.interface
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot announce %s: %s", client.name, exc)
            return
        for p in prefixes:
            self.routes[p] = (via, dev)
        log.warning("gateway %s: announcing %s (%s) into Babel as %s", self.config.interface, client.name,
                    ", ".join(map(str, prefixes)), what)

    async def _withdraw(self, client: ClientEntry, family: int, why: str, handoff: bool = False) -> None:
        """Stop announcing the client's addresses of ``family``.

        With ``handoff`` (the client chose another gateway, and replies may
        still be on their way to us) the route is not deleted: a deleted
        route reaches babeld's neighbours as a retraction, at once or only at
        its next kernel scan, and a router that hears it before the new
        gateway's announcement has no route at all for a moment (40 ms seen
        on the upstream).  Instead, what still reaches us goes to the client
        over a Babel link, where no AllowedIPs filter applies:

        - a client one hop away: the same announcement, now through the mesh
          to it.  Nothing changes for the mesh, so nothing re-converges;
          HANDOFF_SECONDS later, when the new gateway's announcement is
          everywhere, it is demoted (a fast update: the mesh moves over in
          one step), and HANDOFF_SECONDS after that, deleted.
        - a client behind a relay: demoted at once, and kept in our tunnel.
          Through the mesh it would go to the relay, which routes the
          client's address by Babel, and until the demotion has spread that
          leads straight back to us (a loop, traced).  Into the tunnel it is
          still accepted until the client's write; the client gives the mesh
          a moment (RELEASE_SETTLE) to move off us before it writes.
        """
        prefixes = self.ctl.addresses(client.name, family)
        # Only a route of ours can have drawn replies here: a standby that routed nothing hands nothing off.
        path = self._mesh_path(client) if handoff and any(p in self.routes for p in prefixes) else None
        loop = asyncio.get_running_loop()
        try:
            if path is not None and not path.direct:
                await announce(prefixes, self.config.interface, self.config.standby_protocol)
                self.handoffs += 1
                for p in prefixes:
                    self.demoted[p] = (self.handoffs, path)
                loop.call_later(HANDOFF_SECONDS, self._later, self._drop_demoted, prefixes, self.handoffs)
            elif path is not None:
                await announce(prefixes, path.interface, self.config.route_protocol, via=path.via)
                self.handoffs += 1
                for p in prefixes:
                    self.demoted[p] = (self.handoffs, path)
                loop.call_later(HANDOFF_SECONDS, self._later, self._demote, prefixes, self.handoffs)
                loop.call_later(2 * HANDOFF_SECONDS, self._later, self._drop_demoted, prefixes, self.handoffs)
            else:
                await withdraw(prefixes, (self.config.route_protocol, self.config.standby_protocol))
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot withdraw %s: %s", client.name, exc)
            return
        for p in prefixes:
            self.routes.pop(p, None)
        how = ""
        if path is not None and path.direct:
            how = f" (its replies go through the mesh via {path.via}, then demoted; gone in {2 * HANDOFF_SECONDS:g} s)"
        elif path is not None:
            how = f" (demoted in our tunnel, the client behind a relay; gone in {HANDOFF_SECONDS:g} s)"
        log.warning("gateway %s: withdrawing %s (%s): %s%s", self.config.interface, client.name,
                    ", ".join(map(str, prefixes)), why, how)

    def _later(self, step: Callable[[tuple[Prefix, ...]], Awaitable[None]], prefixes: tuple[Prefix, ...],
               handoff: int) -> None:
        """A timer: the prefixes still in the hand-off that set it go through ``step``."""
        still = tuple(p for p in prefixes if p not in self.routes and self.demoted.get(p, (0,))[0] == handoff)
        if still:
            asyncio.ensure_future(step(still))

    async def _demote(self, prefixes: tuple[Prefix, ...]) -> None:
        try:
            for p in prefixes:
                if p in self.demoted:
                    path = self.demoted[p][1]
                    await announce((p,), path.interface, self.config.standby_protocol, via=path.via)
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot demote %s: %s", ", ".join(map(str, prefixes)), exc)

    async def _drop_demoted(self, prefixes: tuple[Prefix, ...]) -> None:
        for p in prefixes:
            self.demoted.pop(p, None)
        try:
            await withdraw(prefixes, (self.config.route_protocol, self.config.standby_protocol))
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot remove demoted routes %s: %s", ", ".join(map(str, prefixes)), exc)

    def _mesh_path(self, client: ClientEntry) -> MeshPath | None:
        """(next hop, interface) of the best Babel route to the client's mesh address, not through our tunnel.

        The next hop is the neighbour's link-local address, which carries
        either family, so the client's IPv4 and IPv6 addresses both take it.
        """
        if client.mesh is None:
            return None
        return mesh_path(self.view.model, client.mesh, self.config.interface)

    async def _lease_loop(self) -> None:
        """Withdraw for clients that stopped asking, when their lease can first have run out (not on a
        quarter-lease tick: that was four wake-ups a second on every gateway)."""
        loop = asyncio.get_running_loop()
        lease = self.config.lease
        while True:
            now = loop.time()
            due = self.ctl.next_expiry(DEVICE_POLL)
            # Announced nobody: a client that asks now gets a lease that ends after our next look.
            wake = now + lease if due is None else min(max(due + 0.001, now + 0.01), now + lease)
            await asyncio.sleep(wake - now)
            for action in self.ctl.expire(loop.time(), DEVICE_POLL):
                await self._carry(action)
            if self.adopted and not any(c in self.adopted for (c, _) in self.ctl.roles):
                self.adopted = []

    async def _stop(self) -> None:
        """Withdraw everything (a clean stop), then let the watchdog go without acting."""
        for action in self.ctl.withdraw_all("meshctl is stopping"):
            with contextlib.suppress(RouteError):
                await self._carry(action)
        if self.watchdog is not None:
            await self.watchdog.stop()

    def status(self) -> dict[str, Any]:
        return {
            "interface": self.config.interface,
            "device": "ok" if self.device_ok else "unreachable",
            "watchdog": None if self.watchdog is None else ("armed" if self.watchdog.proc else "stopped"),
            "clients": [
                {"name": c.name, "addresses": [str(a) for a in c.addresses],
                 "announced": ROLE_NAMES[self.roles.get(c.name, ROLE_NONE)],
                 "roles": {f"ipv{f}": ROLE_NAMES[self.ctl.role(c.name, f)] for f in (4, 6)
                           if any(a.version == f for a in c.addresses)}}
                for c in self.config.clients
            ],
        }
