"""The asyncio side of the gateway role: answer probes, announce and withdraw clients."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from meshctl.config import ClientEntry, GatewayConfig, Prefix
from meshctl.counters import Counters
from meshctl.topology.model import MeshView
from meshctl.udp import BoundSocket
from meshctl.uplink.client_runner import DEVICE_POLL
from meshctl.uplink.control import (
    ROLE_NAMES,
    ROLE_NONE,
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ControlError,
    Message,
    ReplayGuard,
    decode,
    encode,
)
from meshctl.uplink.routes import RouteError, announce, drop_handoff, handoff, withdraw
from meshctl.wireguard.backend import Backend, converge
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError

log = logging.getLogger("meshctl.daemon")

# The handoff route: below babeld's (kernel priority 0), never redistributed.
HANDOFF_PROTO = 154
HANDOFF_METRIC = 1024
HANDOFF_SECONDS = 5.0


class GatewayRunner:
    """Serves clients: answers probes, announces the clients that chose this gateway."""

    def __init__(self, config: GatewayConfig, node: str, view: MeshView, backend: Backend, counters: Counters) -> None:
        self.node = node
        self.view = view
        self.counters = counters
        self.config = config
        self.backend = backend
        self.replay = ReplayGuard()
        self.leases: dict[str, float] = {}  # client -> lease end (monotonic)
        self.roles: dict[str, int] = {}  # client -> what we announce for it
        self.clients = {c.name: c for c in config.clients}
        self.device_ok = False
        self.sock: BoundSocket | None = None

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

    async def run(self) -> None:
        sock = BoundSocket(str(self.config.address.ip), self.config.control_port, self.config.interface,
                           f"gateway {self.config.interface}")
        await sock.open()
        self.sock = sock
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._device_loop())
                tg.create_task(self._lease_loop())
                tg.create_task(self._serve(sock))
        finally:
            sock.close()

    async def _device_loop(self) -> None:
        while True:
            try:
                await converge(self.backend, self.desired())
                if self.sock is not None:
                    await self.sock.check()
                if not self.device_ok:
                    log.info("gateway %s: WireGuard device configured", self.config.interface)
                self.device_ok = True
            except UapiError as exc:
                if self.device_ok:
                    log.error("gateway %s: WireGuard device unreachable: %s", self.config.interface, exc)
                self.counters.backend_errors += 1 if self.device_ok else 0
                self.device_ok = False
            await asyncio.sleep(DEVICE_POLL)

    async def _serve(self, sock: BoundSocket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await sock.recv()
            try:
                message = decode(data, self.config.secret, time.time())
            except ControlError as exc:
                self.counters.rejected[exc.reason] += 1
                continue
            client = self.clients.get(message.sender)
            if client is None or message.kind != "probe":
                self.counters.rejected["unknown-client"] += 1
                continue
            if not any(ip_in(addr[0], p) for p in client.addresses):
                self.counters.rejected["wrong-source"] += 1
                continue
            if not self.replay.accept(message.sender, message.seq):
                self.counters.rejected["replay"] += 1
                continue
            if message.role == ROLE_NONE:
                if client.name in self.roles:
                    await self._withdraw(client, "it chose another gateway", handoff=True)
            else:
                self.leases[client.name] = loop.time() + self.config.lease
                if self.roles.get(client.name) != message.role:
                    await self._announce(client, message.role)
            ack = Message("ack", self.node, message.seq, time.time(), self.roles.get(client.name, ROLE_NONE))
            await sock.send(encode(ack, self.config.secret), addr)

    async def _announce(self, client: ClientEntry, role: int) -> None:
        """Route the client's addresses for babeld to redistribute: into our tunnel when chosen.

        As a standby (the client is about to switch here) the route goes
        through the mesh to the client's own mesh address, at the normal
        metric: the mesh may move its return path here at once, and the client
        takes what arrives over a Babel link whatever its WireGuard says.
        (Into our tunnel, those replies would be dropped by the client's
        WireGuard until its switch.  A standby announced at a high metric
        instead is often not *feasible* in Babel, where this gateway was
        chosen before, and is then ignored until a seqno request.)  Without a
        mesh path to the client, the standby goes into the tunnel with
        ``standby_protocol``, which babeld redistributes with a high metric.
        """
        path = self._mesh_path(client) if role == ROLE_STANDBY else None
        try:
            if role == ROLE_PRIMARY:
                await announce(client.addresses, self.config.interface, self.config.route_protocol)
                what = "primary: chosen by it"
            elif path is not None:
                await announce(client.addresses, path[1], self.config.route_protocol, via=path[0])
                what = f"standby through the mesh (via {path[0]} on {path[1]}): it is about to switch here"
            else:
                await announce(client.addresses, self.config.interface, self.config.standby_protocol)
                what = "standby (high metric): it is about to switch here"
            if role == ROLE_PRIMARY or path is not None:  # only one of our routes per prefix at a time
                await withdraw(client.addresses, (self.config.standby_protocol,))
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot announce %s: %s", client.name, exc)
            return
        self.roles[client.name] = role
        log.warning("gateway %s: announcing %s (%s) into Babel as %s", self.config.interface, client.name,
                    ", ".join(map(str, client.addresses)), what)

    async def _withdraw(self, client: ClientEntry, why: str, handoff: bool = False) -> None:
        self.roles.pop(client.name, None)
        self.leases.pop(client.name, None)
        if handoff:
            await self._handoff(client)
        try:
            await withdraw(client.addresses, (self.config.route_protocol, self.config.standby_protocol))
        except RouteError as exc:
            self.counters.route_errors += 1
            log.error("gateway: cannot withdraw %s: %s", client.name, exc)
            return
        log.warning("gateway %s: withdrawing %s: %s", self.config.interface, client.name, why)

    async def _handoff(self, client: ClientEntry) -> None:
        """Send replies that still reach us to the client through the mesh, not through our tunnel.

        The client is about to give its steered prefixes to another gateway,
        and WireGuard there will drop anything our tunnel still delivers whose
        source it no longer assigns to us.  Until the mesh's return path has
        moved (babeld takes tens to hundreds of milliseconds to spread our
        withdrawal), replies keep arriving here.  A route toward the client's
        own mesh address carries them over a Babel link, where no AllowedIPs
        filter applies, and the client takes them as addressed to itself.

        Without the client's mesh address (``mesh`` in its entry) the best
        other Babel route to its prefix is used, if babeld knows one: Babel
        advertises only selected routes, so often it does not.  The route sits
        below babeld's own (kernel priority 1024 against 0), is never
        redistributed, and goes after a few seconds.
        """
        for prefix in client.addresses:
            path = self._mesh_path(client, prefix)
            if path is None:
                log.info("gateway: no mesh path to %s to hand its replies to", client.name)
                continue
            try:
                await handoff(prefix, path[0], path[1], HANDOFF_PROTO, HANDOFF_METRIC)
            except RouteError as exc:
                log.info("gateway: no handoff route for %s: %s", prefix, exc)
                continue
            asyncio.get_running_loop().call_later(HANDOFF_SECONDS, self._drop_handoff_later, prefix)

    @staticmethod
    def _drop_handoff_later(prefix: Prefix) -> None:
        asyncio.ensure_future(drop_handoff(prefix, HANDOFF_PROTO, HANDOFF_METRIC))

    def _mesh_path(self, client: ClientEntry, prefix: Prefix | None = None) -> tuple[str, str] | None:
        """(next hop, interface) of the best Babel route to the client's mesh address, not through our tunnel.

        Without a mesh address configured, the best other route to ``prefix``
        (one of the client's addresses) if one is given and Babel knows it.
        """
        target = client.mesh or prefix
        if target is None:
            return None
        model = self.view.model
        paths = [r for r in model.routes_for(target) if r.reachable and r.interface != self.config.interface]
        return (str(paths[0].via), paths[0].interface) if paths else None

    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.25, self.config.lease / 4))
            now = loop.time()
            for name in [n for n, end in self.leases.items() if end < now and n in self.roles]:
                await self._withdraw(self.clients[name], f"lease expired ({self.config.lease:g} s without a probe)")

    async def withdraw_all(self) -> None:
        for name in list(self.roles):
            await self._withdraw(self.clients[name], "meshctl is stopping")

    def status(self) -> dict[str, Any]:
        return {
            "interface": self.config.interface,
            "device": "ok" if self.device_ok else "unreachable",
            "clients": [
                {"name": c.name, "addresses": [str(a) for a in c.addresses],
                 "announced": ROLE_NAMES[self.roles.get(c.name, ROLE_NONE)]}
                for c in self.config.clients
            ],
        }


def ip_in(address: str, prefix: Any) -> bool:
    try:
        return ipaddress.ip_address(address) in prefix
    except ValueError:
        return False

