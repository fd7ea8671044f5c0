"""Socket reads into one buffer kept for the socket's life, copied out at the size that arrived.

``sock.recv(n)`` allocates ``n`` bytes and then shrinks the block to what came.
asyncio's transports read 256 KiB at a time.  Once glibc has raised its mmap
threshold (it does the first time a big block is freed, at start-up), each such
read is carved from the top of the heap and shrunk in place, and the next small
object that lives a while (a model entry, a decoded message) lands just behind
it.  The next 256 KiB read fits in no hole left below, so the heap grows again:
a lab gateway's heap grew by about 0.1 MB a minute with nothing more in it, and
a client's more slowly.  Reading into a buffer made once allocates only what
arrived, and the heap stays where start-up left it.

The buffer is an anonymous mapping, not a bytearray (which is zeroed, every
page of it resident at once): only the pages a read reaches become resident,
one for babeld's chatter, all of them only after a big table.
"""

from __future__ import annotations

import mmap
import socket
from typing import Any


class RecvBuffer:
    """A socket's receive buffer: ``size`` bytes, mapped once."""

    __slots__ = ("view",)

    def __init__(self, size: int) -> None:
        self.view = memoryview(mmap.mmap(-1, size))

    def take(self, nbytes: int) -> bytes:
        """The first ``nbytes`` of the buffer, as bytes of their own (the buffer is read into again)."""
        return bytes(self.view[:nbytes])

    def recv(self, sock: socket.socket) -> bytes:
        """``sock.recv(size)``, allocating only what arrived (b"" at the end of a stream)."""
        return self.take(sock.recv_into(self.view))

    def recvfrom(self, sock: socket.socket) -> tuple[bytes, Any]:
        """``sock.recvfrom(size)``, allocating only what arrived.  A datagram longer than the buffer is cut."""
        nbytes, addr = sock.recvfrom_into(self.view)
        return self.take(nbytes), addr

    def recvmsg(self, sock: socket.socket, ancbufsize: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """``sock.recvmsg(size, ancbufsize)``, allocating only what arrived."""
        nbytes, ancillary, flags, addr = sock.recvmsg_into([self.view], ancbufsize)
        return self.take(nbytes), ancillary, flags, addr
