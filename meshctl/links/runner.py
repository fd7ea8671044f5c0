"""The asyncio side of link automation: the tunnels to one configured neighbour.

Each tunnel is a WireGuard device (a kernel device where the module is
loaded, else a wireguard-go process that this daemon owns), configured,
brought up, given a link-local address and attached to babeld through its
read-write local interface (no restart).  A neighbour with several paths
gets one tunnel per path and babeld chooses among them; :mod:`meshctl.links.plan`
says which tunnels there should be (config, gossip) and, for a neighbour
with one tunnel, when to move its endpoint.  On stop every tunnel is
retired: babeld lets go of the interface, the device goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshctl.babel.errors import BabelError
from meshctl.links.netdev import (
    NetdevError,
    create_wireguard,
    delete_link,
    ensure_link_local,
    exists,
    link_local_for,
    link_up,
)
from meshctl.links.plan import (
    EndpointState,
    PathPlan,
    Refusal,
    desired_paths,
    observe,
    roamed,
    single_endpoints,
    with_endpoints,
)
from meshctl.topology.model import INFINITY
from meshctl.wireguard.backend import Backend, choose_backend, kernel_module_loaded
from meshctl.wireguard.diff import diff
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError
from meshctl.wireguard.uapi_client import socket_path

if TYPE_CHECKING:
    from meshctl.links.config import LinksConfig, NeighbourConfig
    from meshctl.topology.model import MeshView, TopologyModel

log = logging.getLogger("meshctl.links")

PR_SET_PDEATHSIG = 1  # prctl(2)
STEP = 1.0  # seconds between looks at each tunnel (a change in babeld's view wakes the runner sooner)
EVERYWHERE = frozenset({ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")})

BabelCommand = Callable[[str], Awaitable[object]]
#: neighbour name -> the endpoints it advertises in gossip (None: no description of it held now)
Advertised = Callable[[str], tuple[str, ...] | None]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the daemon dies, even by SIGKILL, so no tunnel outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def babel_alive(view: MeshView, ifname: str) -> bool | None:
    """Whether babeld has a live neighbour on ``ifname``; None when babeld has no say (not synced, not attached)."""
    iface = view.model.interfaces.get(ifname)
    if not view.synced or iface is None or not iface.up:
        return None
    return any(n.reachable for (_, i), n in view.model.neighbours.items() if i == ifname)


def mesh_prefixes(model: TopologyModel) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Prefixes the mesh routes (installed, reachable): no tunnel endpoint may lie in one."""
    return [p for p, r in model.installed_routes().items() if r.reachable]


class Tunnel:
    """One WireGuard device to the neighbour, attached to babeld."""

    def __init__(self, node: str, neighbour: str, public_key: str, links: LinksConfig, plan: PathPlan,
                 babel_command: BabelCommand, backend: Backend | None) -> None:
        self.node = node
        self.neighbour = neighbour
        self.public_key = public_key
        self.links = links
        self.plan = plan
        self.ifname = plan.interface
        self.babel_command = babel_command
        self.backend = backend or choose_backend(self.ifname)
        self.kernel = backend is None and kernel_module_loaded()
        self.proc: asyncio.subprocess.Process | None = None
        self.attached = False
        self.device_ok = False
        self.written: str | None = None  # the endpoint we last wrote (WireGuard may have roamed since)
        self.peer: Peer | None = None  # as last read

    def desired(self, endpoint: str | None) -> Device:
        """The device; ``endpoint`` None leaves the peer's endpoint as it is (WireGuard roams it)."""
        peer = Peer(public_key=self.public_key, endpoint=endpoint, allowed_ips=EVERYWHERE,
                    persistent_keepalive=self.links.keepalive)
        return Device(name=self.ifname, listen_port=self.plan.listen_port, private_key=self.links.keys.private,
                      fwmark=self.plan.fwmark, peers=(peer,))

    @property
    def endpoint(self) -> str | None:
        """Where the device sends, as last read (or as we set it)."""
        return self.peer.endpoint if self.peer and self.peer.endpoint else self.written

    async def ensure(self, endpoint: str | None, force: bool = False) -> Peer | None:
        """Make the device exist and match; returns the peer as read before any change.

        The endpoint is written when the peer has none, or when ``force``;
        otherwise WireGuard's roaming may have moved it (the neighbour reached
        us from another address), and that stands.
        """
        if not exists(self.ifname) or (self.proc is not None and self.proc.returncode is not None):
            await self._create()
            self.written = None
        device = await self.backend.read(self.ifname)
        peer = device.peer(self.public_key)
        write = endpoint if force or not (peer and peer.endpoint) else None
        request = diff(self.desired(write), device)
        if request is not None:
            await self.backend.write(self.ifname, request)
        if write is not None:
            self.written = write
        self.peer = dataclasses.replace(peer, endpoint=write) if peer and write is not None else peer
        await link_up(self.ifname)
        if await ensure_link_local(self.ifname, link_local_for(self.node, self.neighbour, self.ifname)):
            log.info("link %s: gave %s its link-local address", self.neighbour, self.ifname)
        if not self.device_ok:
            log.info("link %s: tunnel %s up, endpoint %s, port %d", self.neighbour, self.ifname,
                     self.endpoint or "learnt when it calls", self.plan.listen_port)
        self.device_ok = True
        return peer

    async def attach(self, view: MeshView) -> None:
        """Tell babeld about the interface unless it runs on it already."""
        if self.attached and self.ifname in view.model.interfaces:
            return
        await self.babel_command(f"interface {self.ifname} {self.plan.babel}")
        self.attached = True
        log.info("link %s: babeld runs on %s (%s)", self.neighbour, self.ifname, self.plan.babel)

    async def _create(self) -> None:
        if self.kernel:
            await create_wireguard(self.ifname)
            return
        if self.proc is not None and self.proc.returncode is None:
            return  # ours is still starting
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path(self.ifname))  # a dead wireguard-go's socket
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LOG_LEVEL": "error"}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "wireguard-go", "-f", self.ifname, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError:
            raise NetdevError("wireguard-go is not installed and there is no kernel WireGuard") from None
        for _ in range(100):  # wireguard-go creates the device, then its UAPI socket
            if os.path.exists(socket_path(self.ifname)):
                return
            await asyncio.sleep(0.05)
        raise NetdevError(f"wireguard-go did not create {self.ifname}")

    async def detach(self) -> None:
        """Let babeld go of the interface (the next :meth:`attach` adds it again)."""
        if self.attached:
            with contextlib.suppress(BabelError, OSError):
                await self.babel_command(f"flush interface {self.ifname}")
            self.attached = False

    async def retire(self) -> None:
        """Let babeld go of the interface, then remove the device (only ours)."""
        await self.detach()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            # The kernel removes the TUN device after the process has gone; a tunnel
            # made again under the same name must not find the old one.
            for _ in range(100):
                if not exists(self.ifname):
                    break
                await asyncio.sleep(0.05)
        elif self.kernel:
            with contextlib.suppress(NetdevError):
                await delete_link(self.ifname)
        log.info("link %s: tunnel %s retired", self.neighbour, self.ifname)

    def status(self, view: MeshView, now_wall: float) -> dict[str, Any]:
        """One path as ``meshctl status`` shows it: endpoint, state, cost, and whether it carries traffic."""
        model = view.model
        neighbours = [n for (_, i), n in model.neighbours.items() if i == self.ifname]
        live = [n for n in neighbours if n.reachable]
        routes = [r for r in model.installed_routes().values() if r.interface == self.ifname and r.reachable]
        handshake = self.peer.last_handshake if self.peer else 0.0
        if not self.device_ok:
            state = "unreachable"  # the device, not the path
        elif live:
            state = "up"
        elif not handshake:
            state = "handshaking"
        else:
            state = "down"
        cost = min((n.cost for n in neighbours), default=None)
        rtt = min((n.rtt for n in live if n.rtt is not None), default=None)
        return {
            "interface": self.ifname,
            "endpoint": self.endpoint,
            "listen_port": self.plan.listen_port,
            "state": state,
            "cost": cost if cost is None or cost < INFINITY else INFINITY,
            "rxcost": self.plan.rxcost,
            "rtt_ms": rtt,
            "carrying": bool(routes),
            "routes": len(routes),
            "handshake_age_s": round(now_wall - handshake, 1) if handshake else None,
            "rx_bytes": self.peer.rx_bytes if self.peer else None,
            "tx_bytes": self.peer.tx_bytes if self.peer else None,
            "learnt": self.plan.learnt,
            "babel": self.attached,
        }


class LinkRunner:
    """One neighbour's tunnels: one that moves between endpoints, or one per path."""

    def __init__(self, node: str, links: LinksConfig, neighbour: NeighbourConfig, view: MeshView,
                 babel_command: BabelCommand, backend: Backend | None = None,
                 advertised: Advertised | None = None, own_advertised: int = 0) -> None:
        self.node = node
        self.view = view
        self.babel_command = babel_command  # a request on babeld's read-write local interface
        self.links = links
        self.n = neighbour
        self.injected = backend  # None: real devices, each tunnel finds its own (kernel or wireguard-go)
        #: the one tunnel's backend (readers of one-tunnel links); per path, see :meth:`devices`
        self.backend: Backend = backend or choose_backend(neighbour.interface)
        self.advertised = advertised or (lambda name: None)
        self.ads: tuple[str, ...] = ()  # what the neighbour advertised last (kept while its description is away)
        self.own_advertised = own_advertised  # how many endpoints this node advertises (gossip paths pair them)
        self.tunnels: dict[str, Tunnel] = {}  # interface -> tunnel
        self.refused: tuple[Refusal, ...] = ()
        self.state = EndpointState(neighbour.endpoints)
        self.moves = 0
        self._wake = asyncio.Event()
        self._alive: bool | None = None

    @property
    def ifname(self) -> str:
        """The one tunnel's interface (one-tunnel neighbours)."""
        return self.n.interface

    def devices(self) -> list[tuple[Backend, str]]:
        """Each tunnel's backend and interface, one per path (for reading peer counters)."""
        return [(t.backend, t.ifname) for _, t in sorted(self.tunnels.items())]

    def reconfigure(self, neighbour: NeighbourConfig) -> None:
        """A reload changed this neighbour: the next step adds, retires and rewrites tunnels to match."""
        self.n = neighbour
        self._wake.set()

    def _poke(self) -> None:
        """babeld's view changed: wake a one-tunnel runner when its neighbour lived or died there.

        (Per-path neighbours need no hurry: babeld itself moves the traffic.
        And babeld repeats change lines several times a second, so not every
        one may cost a look at the devices.)
        """
        if self.n.per_path:
            return
        alive = babel_alive(self.view, self.n.interface)
        if alive != self._alive:
            self._alive = alive
            self._wake.set()

    async def run(self) -> None:
        self.view.listeners.append(self._poke)  # babeld saw something: look now, not at the next step
        try:
            while True:
                try:
                    await self._step()
                except (UapiError, NetdevError, BabelError, OSError) as exc:
                    if any(t.device_ok for t in self.tunnels.values()):
                        log.error("link %s: %s; retrying", self.n.name, exc)
                    for t in self.tunnels.values():
                        t.device_ok = False
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), STEP)
        finally:
            with contextlib.suppress(ValueError):
                self.view.listeners.remove(self._poke)
            await asyncio.shield(self._retire_all())

    async def _step(self) -> None:
        mesh = mesh_prefixes(self.view.model)
        ads = self.advertised(self.n.name)
        if ads is not None and ads != self.ads:
            log.info("link %s: it advertises %s", self.n.name, ", ".join(ads) or "no endpoints")
            self.ads = ads
        if self.n.per_path:
            plans, refused = desired_paths(self.n, self.links, self.ads, self.own_advertised, mesh)
        else:
            endpoints = single_endpoints(self.n, self.ads, mesh)
            refused = tuple(Refusal(e, "routed through the mesh (it would tunnel into itself)")
                            for e in self.n.endpoints if e not in endpoints)
            self.state = with_endpoints(self.state, endpoints)
            plans = (PathPlan(self.n.interface, self.n.listen_port, self.state.endpoint, self.n.babel or self.links.babel),)
        if refused != self.refused:
            for r in refused:
                log.error("link %s: no tunnel to %s: %s", self.n.name, r.endpoint, r.reason)
            self.refused = refused
        await self._reconcile(plans)
        if self.n.per_path:
            for plan in plans:
                tunnel = self.tunnels[plan.interface]
                # A configured or advertised endpoint that changed is written; one WireGuard roamed to stands.
                changed = plan.endpoint is not None and tunnel.written is not None and plan.endpoint != tunnel.written
                await tunnel.ensure(plan.endpoint, force=changed)
                await tunnel.attach(self.view)
        else:
            await self._step_single(self.tunnels[self.n.interface])

    async def _reconcile(self, plans: tuple[PathPlan, ...]) -> None:
        """Retire tunnels no longer wanted (or whose device or babeld options changed), make the new ones."""
        wanted = {p.interface: p for p in plans}
        for ifname, tunnel in list(self.tunnels.items()):
            plan = wanted.get(ifname)
            if plan is None or not plan.same_device(tunnel.plan):
                del self.tunnels[ifname]
                await tunnel.retire()
            elif plan.babel != tunnel.plan.babel:
                await tunnel.detach()  # babeld applies new options only to an interface it is told about afresh
                tunnel.plan = plan
        for ifname, plan in wanted.items():
            if ifname not in self.tunnels:
                self.tunnels[ifname] = Tunnel(self.node, self.n.name, self.n.public_key, self.links, plan,
                                              self.babel_command, self.injected)
            else:
                self.tunnels[ifname].plan = plan  # the endpoint may have changed (config, gossip)

    async def _step_single(self, tunnel: Tunnel) -> None:
        peer = await tunnel.ensure(self.state.endpoint)
        self.state = roamed(self.state, tunnel.endpoint)
        await tunnel.attach(self.view)
        old = tunnel.endpoint
        alive = babel_alive(self.view, tunnel.ifname)
        now = asyncio.get_running_loop().time()
        self.state, move = observe(self.state, peer.rx_bytes if peer else 0, now, self.links.dead_after, alive)
        if move is not None:
            self.moves += 1
            why = "babeld lost the neighbour" if alive is False else f"nothing for {self.links.dead_after:g} s"
            log.warning("link %s: %s over %s; moving to its next endpoint %s", self.n.name, why, old, move,
                        extra={"event": "endpoint", "link": self.n.name, "old": old, "new": move})
            await tunnel.ensure(move, force=True)

    async def _retire_all(self) -> None:
        """One at a time: babeld 1.12 must not be asked to flush while it is busy dumping."""
        for ifname in list(self.tunnels):
            await self.tunnels.pop(ifname).retire()

    def status(self) -> dict[str, Any]:
        """The neighbour's tunnels for ``meshctl status`` (the first keys describe the one tunnel, or the carrying path)."""
        loop = asyncio.get_running_loop()
        paths = [t.status(self.view, time.time()) for _, t in sorted(self.tunnels.items())]
        carrying = next((p for p in paths if p["carrying"]), None)
        single = not self.n.per_path
        main = self.tunnels.get(self.n.interface) if single else None
        return {
            "neighbour": self.n.name,
            "mode": "per-path" if self.n.per_path else "one tunnel",
            "interface": self.n.interface if single else (carrying["interface"] if carrying else None),
            "endpoint": (main.endpoint if main else None) if single else (carrying["endpoint"] if carrying else None),
            "endpoints": list(self.state.endpoints) if single else [p["endpoint"] for p in paths],
            "heard_s_ago": (round(loop.time() - self.state.heard, 1) if single and self.state.rx_bytes >= 0 else None),
            "moves": self.moves,
            "device": "ok" if self.tunnels and all(t.device_ok for t in self.tunnels.values()) else "unreachable",
            "babel": bool(self.tunnels) and all(t.attached for t in self.tunnels.values()),
            "carrying": carrying["interface"] if carrying else None,
            "paths": paths,
            "refused": [{"endpoint": r.endpoint, "reason": r.reason} for r in self.refused],
        }
