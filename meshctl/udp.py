"""A UDP control socket tied to a WireGuard device, surviving the device's re-creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import asyncio_dgram

log = logging.getLogger("meshctl.daemon")


async def datagram_server(sock: socket.socket) -> asyncio_dgram.aio.DatagramServer:
    """asyncio-dgram's stream over a bound, unconnected UDP socket."""
    stream = await asyncio_dgram.from_socket(sock)
    assert isinstance(stream, asyncio_dgram.aio.DatagramServer)  # unconnected: a server
    return stream


async def _bind(host: str, port: int, device: str, what: str) -> asyncio_dgram.aio.DatagramServer:
    """A UDP socket on ``host:port`` tied to ``device``, waiting for both to exist.

    Tied to the tunnel device (SO_BINDTODEVICE) so control traffic always goes
    through this WireGuard interface: a backup gateway has no route to its
    client (only the chosen one announces it), and the kernel sends out of a
    bound device even without one.
    """
    warned = False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            sock.bind((host, port))
            sock.setblocking(False)
            return await datagram_server(sock)
        except OSError as exc:
            sock.close()
            if not warned:
                log.warning("%s: cannot bind %s:%d on %s yet (%s); retrying", what, host, port, device, exc.strerror)
                warned = True
            await asyncio.sleep(0.5)  # cancellation (the daemon stopping) ends the wait


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

    def __init__(self, host: str, port: int, device: str, what: str) -> None:
        self.host, self.port, self.device, self.what = host, port, device, what
        self.sock: asyncio_dgram.aio.DatagramServer | None = None
        self.index: int | None = None

    async def open(self) -> None:
        self.sock = await _bind(self.host, self.port, self.device, self.what)
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
                data, addr = await sock.recv()
                return data, addr  # type: ignore[return-value]  # an (address, port, ...) tuple for UDP
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

