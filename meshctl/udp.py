"""A UDP control socket tied to a WireGuard device, surviving the device's re-creation.

Datagrams are handed to a callback as they arrive (a plain
:class:`asyncio.DatagramProtocol`) and sent straight to the socket.  The
project depends on asyncio-dgram, whose stream API queued each datagram and
woke a task with a future for it; an uplink probes its chosen gateway 10 to 20
times a second and gets as many acks back, and on an idle client those
per-datagram futures, queue entries and task steps were a large share of the
daemon's CPU.  The uplink plane's hot path therefore uses the callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("meshctl.daemon")

#: Called with (data, address) for each datagram, in the event loop, as it arrives.
OnDatagram = Callable[[bytes, tuple], None]


class _Receiver(asyncio.DatagramProtocol):
    """Hands each datagram to the owner's callback: no queue, no future, no task wake-up."""

    def __init__(self, on_datagram: OnDatagram) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for something we sent: the probes' answers (or their absence) say what counts


async def _bind(host: str, port: int, device: str, what: str,
                on_datagram: OnDatagram) -> tuple[socket.socket, asyncio.DatagramTransport]:
    """A UDP socket on ``host:port`` tied to ``device``, waiting for both to exist.

    Tied to the tunnel device (SO_BINDTODEVICE) so control traffic always goes
    through this WireGuard interface: a backup gateway has no route to its
    client (only the chosen one announces it), and the kernel sends out of a
    bound device even without one.
    """
    warned = False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    loop = asyncio.get_running_loop()
    while True:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            sock.bind((host, port))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(on_datagram), sock=sock)
            return sock, transport
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
    the old socket points at a device that no longer exists.  Each datagram
    that arrives goes to ``on_datagram``, whichever socket it came in on.
    """

    def __init__(self, host: str, port: int, device: str, what: str, on_datagram: OnDatagram) -> None:
        self.host, self.port, self.device, self.what = host, port, device, what
        self.on_datagram = on_datagram
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.index: int | None = None

    async def open(self) -> None:
        self.sock, self.transport = await _bind(self.host, self.port, self.device, self.what, self.on_datagram)
        self.index = ifindex(self.device)

    async def check(self, index: int | None = -1) -> None:
        """Re-bind if the device was re-created since we bound (``index``: the device's, if just looked up)."""
        now = ifindex(self.device) if index == -1 else index
        if now is not None and now != self.index:
            log.info("%s: device %s was re-created; re-binding the control socket", self.what, self.device)
            old = self.transport
            await self.open()
            if old is not None:
                old.close()

    def send(self, data: bytes, addr: tuple) -> None:
        """One datagram, straight to the socket: one the kernel will not take now is lost, as any may be."""
        if self.sock is not None:
            # No route, device gone, buffer full: an unanswered probe, counted as such.
            with contextlib.suppress(OSError):
                self.sock.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
