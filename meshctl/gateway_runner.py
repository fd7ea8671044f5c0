"""The asyncio side of the gateway role: answer probes, announce and withdraw clients."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

from meshctl.bound import BoundSocket
from meshctl.config import ClientEntry, GatewayConfig
from meshctl.control import ROLE_NONE, ROLE_PRIMARY, ControlError, Message, ReplayGuard, decode, encode
from meshctl.routes import RouteError, announce, drop_handoff, handoff, withdraw
from meshctl.uplink_runner import DEVICE_POLL, ROLE_NAMES
from meshctl.wireguard.backend import Backend, converge
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError

if TYPE_CHECKING:
    from meshctl.daemon import Daemon

log = logging.getLogger("meshctl.daemon")

# The handoff route: below babeld's (kernel priority 0), never redistributed.
HANDOFF_PROTO = 154
HANDOFF_METRIC = 1024
HANDOFF_SECONDS = 5.0


class GatewayRunner:
    """Serves clients: answers probes, announces the clients that chose this gateway."""

    def __init__(self, daemon: Daemon, config: GatewayConfig, backend: Backend) -> None:
        self.daemon = daemon
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
                           f"gateway {self.config.interface}", self.daemon.stop)
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
                self.daemon.counters.backend_errors += 1 if self.device_ok else 0
                self.device_ok = False
            await asyncio.sleep(DEVICE_POLL)

    async def _serve(self, sock: BoundSocket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await sock.recv()
            try:
                message = decode(data, self.config.secret, time.time())
            except ControlError as exc:
                self.daemon.counters.rejected[exc.reason] += 1
                continue
            client = self.clients.get(message.sender)
            if client is None or message.kind != "probe":
                self.daemon.counters.rejected["unknown-client"] += 1
                continue
            if not any(ip_in(addr[0], p) for p in client.addresses):
                self.daemon.counters.rejected["wrong-source"] += 1
                continue
            if not self.replay.accept(message.sender, message.seq):
                self.daemon.counters.rejected["replay"] += 1
                continue
            if message.role == ROLE_NONE:
                if client.name in self.roles:
                    await self._withdraw(client, "it chose another gateway", handoff=True)
            else:
                self.leases[client.name] = loop.time() + self.config.lease
                if self.roles.get(client.name) != message.role:
                    await self._announce(client, message.role)
            ack = Message("ack", self.daemon.config.name, message.seq, time.time(), self.roles.get(client.name, ROLE_NONE))
            await sock.send(encode(ack, self.config.secret), addr)

    async def _announce(self, client: ClientEntry, role: int) -> None:
        proto = self.config.route_protocol if role == ROLE_PRIMARY else self.config.standby_protocol
        try:
            await announce(client.addresses, self.config.interface, proto)
        except RouteError as exc:
            self.daemon.counters.route_errors += 1
            log.error("gateway: cannot announce %s: %s", client.name, exc)
            return
        self.roles[client.name] = role
        what = "primary: chosen by it" if role == ROLE_PRIMARY else "standby: it is about to switch here"
        log.warning("gateway %s: announcing %s (%s) into Babel as %s", self.config.interface, client.name,
                    ", ".join(map(str, client.addresses)), what)

    async def _withdraw(self, client: ClientEntry, why: str, handoff: bool = False) -> None:
        self.roles.pop(client.name, None)
        self.leases.pop(client.name, None)
        if handoff:
            await self._handoff(client)
        try:
            await withdraw(client.addresses, self.config.interface)
        except RouteError as exc:
            self.daemon.counters.route_errors += 1
            log.error("gateway: cannot withdraw %s: %s", client.name, exc)
            return
        log.warning("gateway %s: withdrawing %s: %s", self.config.interface, client.name, why)

    async def _handoff(self, client: ClientEntry) -> None:
        """Bridge the gap between our withdrawal and babeld's own route to the client.

        The client has just moved to another gateway, which announces it (as
        standby, then primary).  Replies that still reach us must follow it
        through the mesh; babeld installs that route only a few milliseconds
        after our own route is gone, so we install the path it already knows,
        at a lower priority than babeld's and with a protocol babeld never
        redistributes, and remove it once babeld's route has long taken over.
        """
        model = self.daemon.view.model
        for prefix in client.addresses:
            paths = [r for r in model.routes_for(prefix) if r.reachable and r.interface != self.config.interface]
            if not paths:
                continue
            best = paths[0]
            try:
                await handoff(prefix, str(best.via), best.interface, HANDOFF_PROTO, HANDOFF_METRIC)
            except RouteError as exc:
                log.info("gateway: no handoff route for %s: %s", prefix, exc)
                continue
            asyncio.get_running_loop().call_later(
                HANDOFF_SECONDS,
                lambda p=prefix: asyncio.ensure_future(drop_handoff(p, HANDOFF_PROTO, HANDOFF_METRIC)),
            )

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

