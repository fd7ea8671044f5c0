"""``meshctl daemon``: the asyncio layer that wires babeld, WireGuard and the controllers.

Adapters only: read, feed the pure controllers (``meshctl.uplink``,
``meshctl.policy``, ``meshctl.wireguard.diff``), carry out what they return,
re-arm timers.  Anything that goes wrong at the edges (babeld gone,
wireguard-go restarted, a bad datagram) is logged and counted; the loops go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncio_dgram

from babel.connection import Backoff, Client
from meshctl.config import ClientEntry, GatewayConfig, NodeConfig, UplinkConfig
from meshctl.control import (
    ROLE_NONE,
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ControlError,
    Message,
    ReplayGuard,
    decode,
    encode,
)
from meshctl.errors import MeshctlError
from meshctl.model import MeshView
from meshctl.routes import RouteError, announce, drop_handoff, handoff, withdraw
from meshctl.uplink import UplinkController
from meshctl.wireguard.backend import Backend, choose_backend, converge
from meshctl.wireguard.diff import apply_to, diff
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError

log = logging.getLogger("meshctl.daemon")

DEVICE_POLL = 1.0  # seconds between WireGuard reads (handshake ages, restarts)
# The handoff route: below babeld's (kernel priority 0), never redistributed.
HANDOFF_PROTO = 154
HANDOFF_METRIC = 1024
HANDOFF_SECONDS = 5.0
ROLE_NAMES = {ROLE_NONE: None, ROLE_STANDBY: "standby", ROLE_PRIMARY: "primary"}


@dataclass
class Counters:
    """What went wrong, and how often, for status and metrics."""

    rejected: Counter[str] = field(default_factory=Counter)
    backend_errors: int = 0
    route_errors: int = 0


async def _bind(host: str, port: int, device: str, what: str, stop: asyncio.Event) -> asyncio_dgram.aio.DatagramStream:
    """A UDP socket on ``host:port`` tied to ``device``, waiting for both to exist.

    Tied to the tunnel device (SO_BINDTODEVICE) so control traffic always goes
    through this WireGuard interface: a backup gateway has no route to its
    client (only the chosen one announces it), and the kernel sends out of a
    bound device even without one.
    """
    warned = False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while not stop.is_set():
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            sock.bind((host, port))
            sock.setblocking(False)
            return await asyncio_dgram.from_socket(sock)
        except OSError as exc:
            sock.close()
            if not warned:
                log.warning("%s: cannot bind %s:%d on %s yet (%s); retrying", what, host, port, device, exc.strerror)
                warned = True
            await asyncio.sleep(0.5)
    raise asyncio.CancelledError


def _summary(values: Any) -> dict[str, Any]:
    data = sorted(values)
    if not data:
        return {"count": 0, "median": None, "p99": None}
    return {
        "count": len(data),
        "median": round(statistics.median(data) * 1000, 3),
        "p99": round(data[min(len(data) - 1, int(len(data) * 0.99))] * 1000, 3),
    }


def ifindex(name: str) -> int | None:
    """The interface's index now (a restarted wireguard-go gets a new one)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


class BoundSocket:
    """A control socket tied to a tunnel device, re-bound when the device is re-created.

    SO_BINDTODEVICE pins the interface *index*: after wireguard-go restarts,
    the old socket points at a device that no longer exists.
    """

    def __init__(self, host: str, port: int, device: str, what: str, stop: asyncio.Event) -> None:
        self.host, self.port, self.device, self.what, self.stop = host, port, device, what, stop
        self.sock: asyncio_dgram.aio.DatagramStream | None = None
        self.index: int | None = None

    async def open(self) -> None:
        self.sock = await _bind(self.host, self.port, self.device, self.what, self.stop)
        self.index = ifindex(self.device)

    async def check(self) -> None:
        """Re-bind if the device was re-created since we bound."""
        now = ifindex(self.device)
        if now is not None and now != self.index:
            log.info("%s: device %s was re-created; re-binding the control socket", self.what, self.device)
            old = self.sock
            await self.open()
            if old is not None:
                old.close()

    async def recv(self) -> tuple[bytes, tuple]:
        """Next datagram, riding out a re-bind."""
        while True:
            sock = self.sock
            try:
                assert sock is not None
                return await sock.recv()
            except (OSError, asyncio_dgram.TransportClosed):
                if sock is self.sock:
                    await asyncio.sleep(0.05)

    async def send(self, data: bytes, addr: tuple) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError, asyncio_dgram.TransportClosed):
                await self.sock.send(data, addr)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class UplinkRunner:
    """Drives one :class:`UplinkController`."""

    def __init__(self, daemon: Daemon, config: UplinkConfig, backend: Backend) -> None:
        self.daemon = daemon
        self.config = config
        self.backend = backend
        self.ctl = UplinkController(config, daemon.config.name, time.time_ns())
        self.device: Device | None = None
        self.write_lock = asyncio.Lock()
        self.evaluate_lock = asyncio.Lock()
        self.sock = BoundSocket(str(config.address.ip), 0, config.interface, f"uplink {config.interface}", daemon.stop)
        self._trigger: float | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.device_ok = False

    @property
    def name(self) -> str:
        return self.config.interface

    async def run(self) -> None:
        await self.sock.open()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._device_loop())
            tg.create_task(self._probe_loop())
            tg.create_task(self._recv_loop())

    # -- evaluation -----------------------------------------------------

    def poke(self, trigger: float | None = None) -> None:
        """Something changed: evaluate soon (coalesced), remembering the earliest trigger."""
        trigger = asyncio.get_running_loop().time() if trigger is None else trigger
        if self._trigger is None or trigger < self._trigger:
            self._trigger = trigger
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._evaluate()))

    async def _evaluate(self) -> None:
        self._scheduled = False
        async with self.evaluate_lock:  # a planned switch waits; later pokes queue behind it
            trigger, self._trigger = self._trigger, None
            loop = asyncio.get_running_loop()
            model = self.daemon.view.model
            switch = self.ctl.decide(model, self.device, loop.time(), time.time())
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.ctl.next_deadline is not None:
                self._timer = loop.call_at(self.ctl.next_deadline, self.poke)
            if switch is None:
                return
            planned = self.ctl.planned(switch, loop.time())
            if planned:
                # The wait for the new return path is protocol, not controller latency:
                # it is recorded apart, and the reaction counts from trigger to write
                # without it.
                waited = loop.time()
                await self._make_before_break(switch.new, switch.old or "")
                waited = loop.time() - waited
                self.ctl.prepares.append(waited)
                if trigger is not None:
                    trigger += waited
            ok = await self.converge()
            done = loop.time()
            reaction = done - trigger if trigger is not None else 0.0
            if ok:
                self.ctl.reactions.append(reaction)
            log.warning(
                "uplink %s: %s -> %s, %s (%sWireGuard write %s %.1f ms after the trigger)",
                self.name, switch.old or "none", switch.new, switch.reason,
                "return path prepared; " if planned else "",
                "done" if ok else "FAILED", reaction * 1000,
            )
            await self._send_probes()  # tell the new gateway at once (and the old one, if not told yet)

    async def _make_before_break(self, new: str, old: str, timeout: float = 1.0) -> None:
        """Have ``new`` announce us as a standby and wait until Babel carries it; then release ``old``.

        A standby announcement has a high metric, so the mesh keeps returning
        our traffic through ``old`` (which still accepts it) while a path through
        ``new`` becomes known.  The release goes out just before the WireGuard
        write: ``old`` withdraws, and replies that still reach it follow Babel to
        ``new``.  Only replies already inside ``old``'s tunnel in that instant
        can be lost.
        """
        loop = asyncio.get_running_loop()
        self.ctl.transition = {old: ROLE_PRIMARY, new: ROLE_STANDBY}
        await self._send_probes()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.ctl.probes[new].announced >= ROLE_STANDBY and self.ctl.announcement_seen(new, self.daemon.view.model):
                break
            await asyncio.sleep(0.005)
        else:
            log.info("uplink %s: %s's standby announcement not seen in Babel within %.1f s; switching anyway",
                     self.name, new, timeout)
        self.ctl.transition = None  # the choice (new) is primary again; old is released
        await self._send_probes()

    async def converge(self) -> bool:
        """Bring the device to the desired state in one write; False on failure."""
        async with self.write_lock:
            desired = self.ctl.desired()
            request = diff(desired, self.device)
            if request is None:
                return True
            try:
                await self.backend.write(self.name, request)
            except UapiError as exc:
                self.daemon.counters.backend_errors += 1
                self.device_ok = False
                log.error("uplink %s: WireGuard write failed: %s", self.name, exc)
                return False
            # What WireGuard now holds, without waiting for the next read.
            self.device = apply_to(self.device or Device(self.name), request)
            return True

    # -- loops ----------------------------------------------------------

    async def _device_loop(self) -> None:
        """Read WireGuard state; re-apply the desired state after a restart or drift."""
        while True:
            try:
                device = await self.backend.read(self.name)
            except UapiError as exc:
                if self.device_ok:
                    log.error("uplink %s: WireGuard device unreadable (%s); will re-apply when it is back", self.name, exc)
                self.device_ok = False
                self.device = None
            else:
                if not self.device_ok:
                    log.info("uplink %s: WireGuard device found; applying desired state", self.name)
                self.device = device
                self.device_ok = True
                await self.sock.check()
                await self.converge()  # writes only if the device drifted (e.g. wireguard-go restarted)
                self.poke()  # handshake ages moved
            await asyncio.sleep(DEVICE_POLL)

    async def _send_probes(self) -> None:
        loop = asyncio.get_running_loop()
        for gw, message in self.ctl.probes_to_send(loop.time(), time.time()):
            await self.sock.send(encode(message, self.config.secret), (str(gw.control), self.config.control_port))

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        alive: dict[str, bool] = {}
        while True:
            await self._send_probes()
            await asyncio.sleep(self.config.probe_interval)
            now = loop.time()
            current = {n: p.alive(now, self.ctl.probe_timeout) for n, p in self.ctl.probes.items()}
            if current != alive:
                for name, up in current.items():
                    if alive.get(name, False) != up:
                        log.info("uplink %s: gateway %s %s", self.name, name, "answers probes" if up else "stopped answering probes")
                alive = current
                self.poke(now)

    async def _recv_loop(self) -> None:
        by_addr = {str(g.control): g.name for g in self.config.gateways}
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await self.sock.recv()
            now = loop.time()
            try:
                message = decode(data, self.config.secret, time.time())
            except ControlError as exc:
                self.daemon.counters.rejected[exc.reason] += 1
                continue
            gateway = by_addr.get(addr[0])
            if gateway is None or message.kind != "ack" or message.sender != gateway:
                self.daemon.counters.rejected["unexpected"] += 1
                continue
            if self.ctl.on_ack(gateway, message, now):
                self.poke(now)

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        now, wall = loop.time(), time.time()
        params = self.config.hysteresis
        cands = []
        for view in self.ctl.candidates(self.daemon.view.model, self.device, now, wall):
            probe = self.ctl.probes[view.name]
            cands.append(
                {
                    "name": view.name,
                    "metric": view.metric if view.reachable else None,
                    "handshake_age_s": round(view.handshake_age, 1) if view.handshake_age is not None else None,
                    "state": view.state(params),
                    "alive": view.alive,
                    "probe_rtt_ms": round(probe.rtt * 1000, 2) if probe.rtt is not None else None,
                    "announced": ROLE_NAMES[probe.announced],
                    "chosen": view.name == self.ctl.state.chosen,
                }
            )
        last = self.ctl.state.last_switch
        return {
            "interface": self.name,
            "chosen": self.ctl.state.chosen,
            "steer": [str(p) for p in self.config.steer],
            "device": "ok" if self.device_ok else "unreachable",
            "candidates": cands,
            "switches": self.ctl.state.switches,
            "last_switch": None
            if last is None
            else {
                "old": last.old,
                "new": last.new,
                "reason": last.reason,
                "ago_s": round(now - last.at, 1),
                "at": round(wall - (now - last.at), 3),
            },
            "prepare_ms": _summary(self.ctl.prepares),
            "reaction_ms": _summary(self.ctl.reactions),
        }


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


class Daemon:
    """The whole node: one babeld client, its uplinks, its gateway role."""

    def __init__(self, config: NodeConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.view = MeshView()
        self.view.listeners.append(self._model_changed)
        self.babel = Client(config.babel, self.view, Backoff(initial=0.1, maximum=2.0))
        self.counters = Counters()
        self.stop = asyncio.Event()
        self.started = time.time()
        self.uplinks = [UplinkRunner(self, u, backend or choose_backend(u.interface)) for u in config.uplinks]
        self.gateway = (
            GatewayRunner(self, config.gateway, backend or choose_backend(config.gateway.interface))
            if config.gateway
            else None
        )

    def _model_changed(self) -> None:
        now = asyncio.get_running_loop().time()
        for u in self.uplinks:
            u.poke(now)

    async def run(self) -> None:
        """Run until cancelled; clean up what must not outlive the daemon."""
        server = await self._control_server()
        log.info("meshctl daemon for %s started (%d uplink(s)%s)", self.config.name, len(self.uplinks),
                 ", gateway" if self.gateway else "")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.babel.run())
                for u in self.uplinks:
                    tg.create_task(u.run())
                if self.gateway:
                    tg.create_task(self.gateway.run())
        finally:
            self.stop.set()
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.control_socket)
            if self.gateway:
                await asyncio.shield(self.gateway.withdraw_all())

    async def _control_server(self) -> asyncio.AbstractServer:
        path = self.config.control_socket
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await asyncio.wait_for(reader.readline(), 2.0)
                if line.strip() == b"status":
                    writer.write(json.dumps(self.status()).encode() + b"\n")
                else:
                    writer.write(b'{"error": "unknown request"}\n')
                await writer.drain()
            except (TimeoutError, OSError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_unix_server(handle, path)
        os.chmod(path, 0o660)
        return server

    def status(self) -> dict[str, Any]:
        """Everything ``meshctl status`` shows."""
        stats = self.babel.stats
        return {
            "node": self.config.name,
            "uptime_s": round(time.time() - self.started, 1),
            "babel": {
                "address": str(self.config.babel),
                "synced": self.view.synced,
                "router_id": self.view.model.me.router_id,
                "reconnects": stats.reconnects,
                "malformed_lines": stats.malformed,
                "last_error": stats.last_error or None,
            },
            "uplinks": [u.status() for u in self.uplinks],
            "gateway": self.gateway.status() if self.gateway else None,
            "counters": {
                "rejected_datagrams": dict(self.counters.rejected),
                "backend_errors": self.counters.backend_errors,
                "route_errors": self.counters.route_errors,
            },
        }


async def query_status(path: str, timeout: float = 3.0) -> dict[str, Any]:
    """Ask a running daemon for its status over its control socket."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"status\n")
            await writer.drain()
            data = await reader.read()
            writer.close()
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or "timed out"
        raise MeshctlError(f"no meshctl daemon answering at {path}: {reason}") from None
    return json.loads(data)
