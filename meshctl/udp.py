"""UDP control sockets tied to a WireGuard device, surviving the device's re-creation.

Two ways to read one, for two rates of traffic:

- :class:`BoundSocket` hands each datagram to a callback as it arrives (the
  loop's reader on the socket, no transport), or all waiting ones in one go
  when asked.  A client probes its chosen gateway 10 to 20 times a second and
  gets as many acks; on an idle client, a future, a queue entry and a task
  step per datagram were a large share of the daemon's CPU.
- :class:`BoundStream` is asyncio-dgram's stream: ``await recv()``, one
  datagram after the other.  A gateway carries out what a probe asks (kernel
  routes) before it acks it, and in order, which is exactly a queue read by
  one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import socket
import struct
import time
from collections.abc import Callable

import asyncio_dgram

from meshctl.recvbuf import RecvBuffer

log = logging.getLogger("meshctl.daemon")

#: Called with (data, address, arrival) for each datagram, in the event loop; ``arrival`` is the loop
#: time the kernel received it (a held socket is read later than that).
OnDatagram = Callable[[bytes, tuple, float], None]

# SO_TIMESTAMPNS: the kernel stamps each datagram as it arrives.  Python does not name it; 35 is its
# number in Linux's asm-generic socket.h (x86, ARM, MIPS, RISC-V, PowerPC).  Elsewhere a held datagram
# counts as arriving when it is read: at most the hold late.
_SO_TIMESTAMPNS = 35 if not platform.machine().startswith(("sparc", "parisc", "alpha")) else None
_TIMESPEC = struct.Struct("@qq")


class _Reader:
    """The loop's reader on a bound socket, which may be stopped and started; closing it closes the socket.

    The loop's own add_reader rather than a datagram transport: Python 3.11.2 (Debian 12's) cannot pause
    a datagram transport, and the datagrams are read with their arrival stamps anyway.
    """

    def __init__(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock, self.callback = sock, callback
        self.fd = sock.fileno()
        self.reading = False

    def start(self) -> None:
        if not self.reading and self.fd >= 0:
            self.loop.add_reader(self.fd, self.callback)
            self.reading = True

    def stop(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def close(self) -> None:
        self.stop()
        self.fd = -1
        self.sock.close()


async def _bind(host: str, port: int, device: str, what: str) -> socket.socket:
    """A non-blocking UDP socket on ``host:port`` tied to ``device``, waiting for both to exist.

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
            return sock
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


class _Bound:
    """A control socket tied to a tunnel device, re-bound when the device is re-created.

    SO_BINDTODEVICE pins the interface *index*: after wireguard-go restarts,
    the old socket points at a device that no longer exists.
    """

    def __init__(self, host: str, port: int, device: str, what: str) -> None:
        self.host, self.port, self.device, self.what = host, port, device, what
        self.sock: socket.socket | None = None
        self.index: int | None = None

    async def _attach(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _handle(self) -> _Reader | asyncio_dgram.aio.DatagramServer | None:
        """What reads the socket now, and closes it."""
        raise NotImplementedError

    async def open(self) -> None:
        await self._attach(await _bind(self.host, self.port, self.device, self.what))
        self.index = ifindex(self.device)

    async def check(self, index: int | None = -1) -> None:
        """Re-bind if the device was re-created since we bound (``index``: the device's, if just looked up)."""
        now = ifindex(self.device) if index == -1 else index
        if now is not None and now != self.index:
            log.info("%s: device %s was re-created; re-binding the control socket", self.what, self.device)
            old = self._handle()
            await self.open()
            if old is not None:
                old.close()

    def close(self) -> None:
        handle = self._handle()
        if handle is not None:
            handle.close()


class BoundSocket(_Bound):
    """Each datagram that arrives goes to ``on_datagram``, whichever socket it came in on."""

    def __init__(self, host: str, port: int, device: str, what: str, on_datagram: OnDatagram) -> None:
        super().__init__(host, port, device, what)
        self.on_datagram = on_datagram
        self.reader: _Reader | None = None
        self.buffer = RecvBuffer(65536)  # every datagram read into it (see meshctl.recvbuf)

    async def _attach(self, sock: socket.socket) -> None:
        if _SO_TIMESTAMPNS is not None:
            with contextlib.suppress(OSError):  # without stamps, a held datagram arrived when it is read
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.drain()  # what the socket this one replaces still holds
        self.sock = sock
        self.reader = _Reader(sock, self.drain)
        self.reader.start()

    def quiet(self) -> None:
        """Stop waking for each datagram; they wait in the socket for :meth:`drain`.

        A probe round's answers come back within a millisecond or two of each other: read as
        they come, each would wake the loop on its own.
        """
        if self.reader is not None:
            self.reader.stop()

    def live(self) -> None:
        """Read each datagram as it comes again (after draining what waits)."""
        self.drain()
        if self.reader is not None:
            self.reader.start()

    def drain(self) -> None:
        """Hand on every datagram waiting in the socket, each with the time the kernel received it."""
        sock = self.sock
        if sock is None or sock.fileno() < 0:
            return
        now, wall = asyncio.get_running_loop().time(), time.time()
        failed = 0
        while True:
            try:
                data, ancillary, _, addr = self.buffer.recvmsg(sock, 64)
            except BlockingIOError:
                return
            except OSError:  # an ICMP error for something we sent, reported once: read on, but never spin
                failed += 1
                if failed > 1:
                    return
                continue
            arrival = now
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    arrival = min(now, now - (wall - (sec + nsec / 1e9)))
            self.on_datagram(data, addr, arrival)

    def _handle(self) -> _Reader | None:
        return self.reader

    def send(self, data: bytes, addr: tuple) -> None:
        """One datagram, straight to the socket: one the kernel will not take now is lost, as any may be."""
        if self.sock is not None:
            # No route, device gone, buffer full: an unanswered probe, counted as such.
            with contextlib.suppress(OSError):
                self.sock.sendto(data, addr)


class BoundStream(_Bound):
    """asyncio-dgram's stream over the bound socket: datagrams in order, one ``recv()`` at a time.

    ``largest``: the longest datagram the reader accepts.  asyncio's datagram
    transport asks the kernel for 256 KiB per datagram and shrinks the block to
    what came, which grew a lab gateway's heap by half a megabyte in its first
    minutes (see meshctl.recvbuf); this one asks for ``largest + 1`` bytes, so that a
    longer datagram still arrives longer than ``largest`` and is refused as
    too long, never cut into one that fits.
    """

    def __init__(self, host: str, port: int, device: str, what: str, largest: int) -> None:
        super().__init__(host, port, device, what)
        self.read_size = largest + 1
        self.stream: asyncio_dgram.aio.DatagramServer | None = None  # unconnected: a server

    async def _attach(self, sock: socket.socket) -> None:
        stream = await asyncio_dgram.from_socket(sock)
        assert isinstance(stream, asyncio_dgram.aio.DatagramServer)  # unconnected: a server
        # asyncio's selector transport reads ``recvfrom(self.max_size)``, a class attribute an instance may
        # override; asyncio-dgram does not name its transport.  Another loop's transport is left as it is.
        transport = getattr(stream, "_transport", None)
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = self.read_size  # type: ignore[union-attr]
        self.stream, self.sock = stream, sock

    def _handle(self) -> asyncio_dgram.aio.DatagramServer | None:
        return self.stream

    async def recv(self) -> tuple[bytes, tuple]:
        """The next datagram, riding out a re-bind."""
        while True:
            stream = self.stream
            try:
                assert stream is not None
                data, addr = await stream.recv()
                return data, addr  # type: ignore[return-value]  # an (address, port, ...) tuple for UDP
            except (OSError, asyncio_dgram.TransportClosed):
                if stream is self.stream:  # not re-bound meanwhile: the socket failed; do not spin
                    await asyncio.sleep(0.05)

    async def send(self, data: bytes, addr: tuple) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError, asyncio_dgram.TransportClosed):
                await self.stream.send(data, addr)
