"""The asyncio side of link automation: one managed tunnel per configured neighbour.

Creates the WireGuard device (a kernel device where the module is loaded,
else a wireguard-go process that this daemon owns), configures it, brings it
up, attaches it to babeld through its read-write local interface (no
restart), and moves its endpoint when the neighbour falls silent
(:mod:`meshctl.links.plan` decides).  On stop the tunnel is retired: babeld lets
go of the interface, the device goes away.
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
from meshctl.links.plan import EndpointState, observe
from meshctl.wireguard.backend import Backend, choose_backend, kernel_module_loaded
from meshctl.wireguard.diff import diff
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import UapiError
from meshctl.wireguard.uapi_client import socket_path

if TYPE_CHECKING:
    from meshctl.config import LinksConfig, NeighbourConfig
    from meshctl.topology.model import MeshView

log = logging.getLogger("meshctl.links")

PR_SET_PDEATHSIG = 1  # prctl(2)
STEP = 1.0  # seconds between looks at each tunnel
EVERYWHERE = frozenset({ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")})


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the daemon dies, even by SIGKILL, so no tunnel outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LinkRunner:
    """One neighbour's tunnel."""

    def __init__(self, node: str, links: LinksConfig, neighbour: NeighbourConfig, view: MeshView,
                 babel_command: Callable[[str], Awaitable[object]], backend: Backend | None = None) -> None:
        self.node = node
        self.view = view
        self.babel_command = babel_command  # a request on babeld's read-write local interface
        self.links = links
        self.n = neighbour
        self.ifname = neighbour.interface
        self.backend = backend or choose_backend(self.ifname)
        self.kernel = backend is None and kernel_module_loaded()
        self.state = EndpointState(neighbour.endpoints)
        self.proc: asyncio.subprocess.Process | None = None
        self.attached = False
        self.device_ok = False
        self.moves = 0
        self.endpoint = self.state.endpoint  # what the device uses, as last read

    def desired(self, endpoint: str | None) -> Device:
        """The device; ``endpoint`` None leaves the peer's endpoint as it is (WireGuard roams it)."""
        peer = Peer(public_key=self.n.public_key, endpoint=endpoint, allowed_ips=EVERYWHERE,
                    persistent_keepalive=self.links.keepalive)
        return Device(name=self.ifname, listen_port=self.n.listen_port, private_key=self.links.keys.private,
                      peers=(peer,))

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except (UapiError, NetdevError, BabelError, OSError) as exc:
                    if self.device_ok:
                        log.error("link %s (%s): %s; retrying", self.n.name, self.ifname, exc)
                    self.device_ok = False
                await asyncio.sleep(STEP)
        finally:
            await asyncio.shield(self._retire())

    async def _step(self) -> None:
        if not exists(self.ifname) or (self.proc is not None and self.proc.returncode is not None):
            await self._create()
        device = await self.backend.read(self.ifname)
        peer = device.peer(self.n.public_key)
        # Our endpoint is set when the peer is new; after that WireGuard's roaming
        # may move it (the neighbour reached us from another address), and only a
        # silence moves it on our side.
        request = diff(self.desired(None if peer and peer.endpoint else self.state.endpoint), device)
        if request is not None:
            await self.backend.write(self.ifname, request)
        self.endpoint = peer.endpoint if peer and peer.endpoint else self.state.endpoint
        if self.endpoint in self.n.endpoints and self.endpoint != self.state.endpoint:  # roamed to one we know
            self.state = dataclasses.replace(self.state, current=self.n.endpoints.index(self.endpoint))
        await link_up(self.ifname)
        if await ensure_link_local(self.ifname, link_local_for(self.node, self.n.name)):
            log.info("link %s: gave %s its link-local address", self.n.name, self.ifname)
        if not self.device_ok:
            log.info("link %s: tunnel %s up, endpoint %s", self.n.name, self.ifname, self.state.endpoint)
        self.device_ok = True
        if self.ifname not in self.view.model.interfaces or not self.attached:
            await self._attach()
        loop = asyncio.get_running_loop()
        old = self.endpoint
        self.state, move = observe(self.state, peer.rx_bytes if peer else 0, loop.time(), self.links.dead_after)
        if move is not None:
            self.moves += 1
            log.warning("link %s: nothing from %s for %.0f s; trying its next endpoint %s", self.n.name, old,
                        self.links.dead_after, move,
                        extra={"event": "endpoint", "link": self.n.name, "old": old, "new": move})
            request = diff(self.desired(move), device)
            if request is not None:
                await self.backend.write(self.ifname, request)
            self.endpoint = move

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

    async def _attach(self) -> None:
        await self.babel_command(f"interface {self.ifname} {self.links.babel}")
        self.attached = True
        log.info("link %s: babeld runs on %s (%s)", self.n.name, self.ifname, self.links.babel)

    async def _retire(self) -> None:
        """Let babeld go of the interface, then remove the device (only ours)."""
        if self.attached:
            with contextlib.suppress(BabelError, OSError):
                await self.babel_command(f"flush interface {self.ifname}")
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
            if self.proc.returncode is None:
                self.proc.kill()
        elif self.kernel:
            with contextlib.suppress(NetdevError):
                await delete_link(self.ifname)
        log.info("link %s: tunnel %s retired", self.n.name, self.ifname)

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return {
            "neighbour": self.n.name,
            "interface": self.ifname,
            "endpoint": self.endpoint,
            "endpoints": list(self.n.endpoints),
            "heard_s_ago": round(loop.time() - self.state.heard, 1) if self.state.rx_bytes >= 0 else None,
            "moves": self.moves,
            "device": "ok" if self.device_ok else "unreachable",
            "babel": self.attached,
        }
