"""A small HTTP/1.1 listener that a local user cannot turn against the daemon.

The metrics listener shares the daemon's descriptors and event loop with the
fail-over path (UAPI sockets, babeld, control datagrams).  Whatever arrives
on it must never cost that path a descriptor or a slice of the loop, so:

- at most ``max_connections`` connections are open at once.  The accept loop
  takes a slot *before* it calls ``accept()``; when all slots are taken it
  simply stops accepting, and further connections wait in the kernel's
  small listen backlog (or are refused by it), holding no descriptor of ours.
- each connection has ``deadline`` seconds in all (request head and answer);
  an idle or slow client is cut off then, however it trickles bytes.
- a request head is at most ``max_head`` bytes; one request per connection.
- ``accept()`` failing (EMFILE: the process is out of descriptors anyway) is
  logged once and retried after a pause, never a traceback storm.

The answer is produced on the event loop, so handlers read the daemon's state
without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import field
from urllib.parse import unquote

from meshctl.records import record

log = logging.getLogger("meshctl.http")

MAX_CONNECTIONS = 16
DEADLINE = 3.0  # seconds per connection, head and answer together
MAX_HEAD = 8192
BACKLOG = 16


@record
class Request:
    """One parsed request head."""

    method: str
    path: str
    query: bytes
    headers: tuple[tuple[str, str], ...]  # names lowercased, in order

    def header(self, name: str) -> str:
        """Every value of one header, joined with commas (as HTTP allows)."""
        return ",".join(v for k, v in self.headers if k == name)


@record
class Response:
    """What a handler answers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=())


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}

Handler = Callable[[Request], Awaitable[Response]]


def parse_head(head: bytes) -> Request | None:
    """The request line and headers; None if they are not HTTP."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target = parts[0], parts[1]
    path, _, query = target.partition("?")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers.append((name.strip().lower(), value.strip()))
    return Request(method, unquote(path), query.encode("latin-1"), tuple(headers))


class BoundedServer:
    """Serves ``handler`` on one TCP socket, within the limits above."""

    def __init__(self, handler: Handler, max_connections: int = MAX_CONNECTIONS, deadline: float = DEADLINE,
                 max_head: int = MAX_HEAD) -> None:
        self.handler = handler
        self.deadline = deadline
        self.max_head = max_head
        self.max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.served = 0
        self.cut_off = 0  # connections closed at their deadline
        self.accept_errors = 0

    @property
    def open_connections(self) -> int:
        """Connections being served now (never more than ``max_connections``)."""
        return len(self._connections)

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting; OSError if the address cannot be bound."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop(sock))

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._sock is not None:
            self._sock.close()

    async def wait_closed(self) -> None:
        """Wait until the accept loop and every connection are gone."""
        tasks = [t for t in (self._accepting, *self._connections) if t is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        warned = False
        while True:
            await self._slots.acquire()  # no free slot: no accept(); the kernel's backlog waits, not us
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                self._slots.release()
                self.accept_errors += 1
                if not warned:
                    log.error("metrics: accept() failed (%s); pausing the listener, the daemon goes on",
                              errno.errorcode.get(exc.errno or 0, exc))
                    warned = True
                await asyncio.sleep(0.5)
                continue
            except BaseException:
                self._slots.release()
                raise
            warned = False
            task = loop.create_task(self._serve(conn))
            self._connections.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        self._slots.release()

    async def _serve(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.deadline):
                reader, writer = await asyncio.open_connection(sock=conn, limit=self.max_head)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request = parse_head(head[:-4])
                if request is None:
                    response = Response(400, b"not an HTTP request\n", (("Content-Type", "text/plain"),))
                elif request.method not in ("GET", "HEAD"):
                    response = Response(405, b"only GET and HEAD\n", (("Content-Type", "text/plain"),))
                else:
                    response = await self._answer(request)
                writer.write(_encode(response, head_only=request is not None and request.method == "HEAD"))
                await writer.drain()
                self.served += 1
        except TimeoutError:
            self.cut_off += 1
        except OSError:
            pass
        finally:
            if writer is not None:
                writer.close()
            else:
                conn.close()

    async def _answer(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:  # a broken page must not take the listener (or the daemon) with it
            log.exception("metrics: answering %s failed", request.path)
            return Response(500, b"internal error\n", (("Content-Type", "text/plain"),))


def _encode(response: Response, head_only: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in response.headers if k.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(response.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else response.body)
