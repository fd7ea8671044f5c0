"""Thin asyncio adapter around :class:`babel.protocol.BabelProtocol`.

It reads, feeds the protocol, and hands events on; the only decisions it
makes are about the socket (timeouts, reconnect backoff).  babeld cuts off a
client that leaves its socket unread for 100 ms, so one reader task per
connection always drains the socket and calls the sink synchronously.

Deadlines measure babeld's silence, not our own work: a reply is late when
babeld has sent nothing for ``timeout`` seconds while we were waiting to
read, however long the table it is sending takes us to parse.  A big table
on a slow or busy machine therefore syncs, and a babeld that stops talking
is still caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from meshctl.babel import events as ev
from meshctl.babel.endpoint import Endpoint
from meshctl.babel.errors import BabelConnectionError, BabelError, CommandError, ParseError
from meshctl.babel.protocol import BabelProtocol, Closed, CommandDone, Malformed, Ready
from meshctl.recvbuf import RecvBuffer

log = logging.getLogger("meshctl.babel")

_OURS = frozenset({Ready, CommandDone, Closed})  # the protocol's own events; the rest go to the handler
#: How long babeld may stay silent while it sends the table that ``monitor`` starts with.
SYNC_SILENCE = 10.0
_NOT_LISTENING = (errno.ECONNREFUSED, errno.ENOENT)
#: A read at least this big is a burst (a table, a flap storm), not chatter: it is read on at once.
#: babeld drops a client whose socket stays full for 100 ms, so a burst must never wait for a beat.
BURST = 16384
#: babeld is chatty (its reads may wait for a beat) when it wrote again within this many seconds.
CHATTY = 0.2
#: When to read again after a read: a function of the loop time (see meshctl.beat), or None for at once.
ReadPace = Callable[[float], float]
#: The most one read takes: what asyncio's transports read at once, so a table arrives in as few reads.
READ_SIZE = 262144


class Connection(asyncio.BufferedProtocol):
    """One session with babeld.  Use :meth:`open`; close with :meth:`close`.

    It is the socket's asyncio protocol: each read is handed to
    :meth:`buffer_updated` and parsed there, with no reader task and no
    future per read.  babeld writes every few tens of milliseconds, and
    waking a task for each read was most of an idle daemon's CPU.  Reads go
    into one buffer kept for the connection (see :mod:`meshctl.recvbuf`).
    """

    def __init__(self, endpoint: Endpoint, pace: ReadPace | None = None) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.endpoint = endpoint
        # babeld repeats the same neighbour and route lines tens of times a second; reading them on a
        # beat instead of as they come turns ~50 wake-ups a second into one per beat.  Only while idle:
        # never while a command's reply (or the first table) is due, never during a burst.
        self.pace = pace
        self._resume: asyncio.TimerHandle | None = None
        self._raw: socket.socket | None = None  # the same socket, to read on the beat without the transport
        self._transport: asyncio.Transport | None = None
        self._proto = BabelProtocol()
        self._buffer = RecvBuffer(READ_SIZE)
        self._waiters: deque[asyncio.Future[CommandDone]] = deque()
        self._on_event: Callable[[ev.Event], None] = lambda event: None
        self._ready: asyncio.Future[ev.Banner] = loop.create_future()
        self._gone: asyncio.Future[None] = loop.create_future()  # the transport has let go of the socket
        self.closed: asyncio.Future[str] = loop.create_future()
        #: Loop time at which we last went back to waiting on babeld (after handling what it sent).
        self.last_heard = loop.time()

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout: float = 5.0, pace: ReadPace | None = None) -> Connection:
        """Connect and wait for babeld's banner."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                if endpoint.scheme == "unix":
                    _, conn = await loop.create_unix_connection(lambda: cls(endpoint, pace), endpoint.path)
                else:
                    _, conn = await loop.create_connection(lambda: cls(endpoint, pace), endpoint.host, endpoint.port)
        except TimeoutError:
            raise BabelConnectionError(f"babeld at {endpoint}: connect timed out after {timeout:g}s") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = " (is babeld running with this local port or path?)" if exc.errno in _NOT_LISTENING else ""
            raise BabelConnectionError(f"babeld at {endpoint}: {reason}{hint}") from None
        try:
            async with asyncio.timeout(timeout):
                conn.banner = await asyncio.shield(conn._ready)
        except TimeoutError:
            conn.close()
            raise BabelConnectionError(f"babeld at {endpoint}: no banner within {timeout:g}s (is it babeld?)") from None
        except BabelError:
            conn.close()
            raise
        return conn

    banner: ev.Banner

    @property
    def protocol(self) -> BabelProtocol:
        """The state machine (for its counters)."""
        return self._proto

    def set_handler(self, handler: Callable[[ev.Event], None]) -> None:
        """Route table updates and :class:`Malformed` events to ``handler``."""
        self._on_event = handler

    async def command(self, command: str, timeout: float = 5.0) -> CommandDone:
        """Send one command and wait for its reply; raise on ``no``/``bad``.

        ``timeout`` bounds babeld's silence while the reply is due, not the
        whole exchange: a ``dump`` of 300,000 routes may take us longer than
        that to parse, and babeld keeps talking all the while.
        """
        if self.closed.done() or self._transport is None:
            raise BabelConnectionError(f"babeld at {self.endpoint}: connection closed")
        data = self._proto.send(command)
        waiter: asyncio.Future[CommandDone] = asyncio.get_running_loop().create_future()
        if command.strip() != "quit":
            self._waiters.append(waiter)
            self._read_now()  # the reply must not wait for a beat
        self._transport.write(data)  # a few bytes: no flow control to wait for
        if command.strip() == "quit":
            return CommandDone("quit", "ok")
        try:
            done = await self._await_reply(waiter, timeout)
        except TimeoutError:
            self.close()
            raise BabelConnectionError(
                f"babeld at {self.endpoint}: silent for {timeout:g}s while the reply to {command!r} was due") from None
        if not done.ok:
            raise CommandError(done.command, done.reply, done.message)
        return done

    async def _await_reply(self, waiter: asyncio.Future[CommandDone], silence: float) -> CommandDone:
        """Wait for ``waiter`` until babeld has been silent for ``silence`` seconds (TimeoutError)."""
        loop = asyncio.get_running_loop()
        since = loop.time()  # what babeld said before the command does not count
        while True:
            quiet = loop.time() - max(since, self.last_heard)
            if quiet >= silence:
                raise TimeoutError
            await asyncio.wait({waiter}, timeout=silence - quiet)
            if waiter.done():
                return waiter.result()

    async def dump(self, timeout: float = 5.0) -> list[ev.Event]:
        """Return babeld's full table (only meaningful without ``monitor``)."""
        collected: list[ev.Event] = []
        previous = self._on_event
        self._on_event = collected.append
        try:
            await self.command("dump", timeout)
        finally:
            self._on_event = previous
        return collected

    def close(self) -> None:
        """Close the socket; idempotent."""
        if self._resume is not None:
            self._resume.cancel()
        if self._transport is not None:
            self._transport.close()
        self._finish("closed by us")

    async def wait_closed(self) -> None:
        """Close and wait until the socket is let go of."""
        self.close()
        if self._transport is not None:
            await self._gone

    # -- asyncio.BufferedProtocol -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self.pace is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self._raw = sock.dup()  # asyncio's wrapper cannot recv; a dup reads the same stream
                self._raw.setblocking(False)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self._received(self._buffer.take(nbytes))

    def _received(self, data: bytes) -> None:
        self._proto.receive_data(data)
        if self._pump():
            self.close_after("babeld closed the connection")
            return
        now = self._loop.time()
        chatty = now - self.last_heard < CHATTY
        self.last_heard = now
        if chatty and self._may_wait(len(data)):
            # babeld is repeating itself: stop waking for it, and read what it says on the beat.
            assert self._transport is not None
            self._transport.pause_reading()
            self._poll_on_beat(now)

    def _may_wait(self, size: int) -> bool:
        """May what babeld sends next wait for the beat?  Not a command's reply, not a burst."""
        return self.pace is not None and self._raw is not None and not self._waiters and size < BURST

    def _poll_on_beat(self, now: float) -> None:
        assert self.pace is not None
        if self._resume is None:
            self._resume = self._loop.call_at(self.pace(now), self._poll)

    def _poll(self) -> None:
        """On the beat: read what babeld said meanwhile straight from the socket, without a wake-up of its own.

        Back to reading as it comes when babeld has gone quiet (nothing waited: polling would only add
        wake-ups), for a burst, for a command's reply, and for an EOF or error (the transport sees those).
        """
        self._resume = None
        raw, transport = self._raw, self._transport
        if raw is None or transport is None or transport.is_closing():
            return
        got = 0
        while True:
            try:
                chunk = self._buffer.recv(raw)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # EOF or a failed socket: the transport reads it again and says which
                transport.resume_reading()
                return
            got += len(chunk)
            self._proto.receive_data(chunk)
            if self._pump():
                self.close_after("babeld closed the connection")
                return
        now = self._loop.time()
        if got:
            self.last_heard = now
        if got and self._may_wait(got):
            self._poll_on_beat(now)
        else:
            transport.resume_reading()

    def poll_now(self) -> None:
        """Read what babeld said meanwhile now, not at the beat: the caller is awake anyway and is about
        to act on the model (a gateway answering a probe).  The next beat is counted from now."""
        if self._resume is not None:
            self._resume.cancel()
            self._poll()

    def _read_now(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def eof_received(self) -> bool:
        self._proto.receive_data(b"")
        self._pump()
        self.close_after("babeld closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._resume is not None:
            self._resume.cancel()
        if self._raw is not None:
            self._raw.close()
        self._finish(f"read failed: {exc}" if exc else "babeld closed the connection")
        if not self._gone.done():
            self._gone.set_result(None)

    def close_after(self, reason: str) -> None:
        """The stream ended (``reason``): settle everything waiting, then close the socket."""
        self._finish(reason)
        if self._transport is not None:
            self._transport.close()

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        error = BabelConnectionError(f"babeld at {self.endpoint}: {reason}")
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # mark retrieved: open() may be gone already
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()

    def _pump(self) -> bool:
        """Dispatch every pending event; True once the stream has ended."""
        while (event := self._proto.next_event()) is not None:
            kind = type(event)  # one look-up per event: a big table is hundreds of thousands of them
            if kind in _OURS:
                if isinstance(event, Ready):
                    if not self._ready.done():
                        self._ready.set_result(event.banner)
                elif isinstance(event, CommandDone):
                    if self._waiters:
                        waiter = self._waiters.popleft()
                        if not waiter.done():
                            waiter.set_result(event)
                else:
                    return True  # Closed
            else:
                self._on_event(event)
        return False


@contextlib.contextmanager
def table_arriving() -> Iterator[None]:
    """Pause Python's cycle collector while a whole table arrives, and resume it after.

    Each route the model keeps is a tracked object, and the collector's
    passes over the growing heap made a line cost 40 % more at 100,000 routes
    than at 10,000.  The model makes no reference cycles, and a table takes
    seconds at most, so nothing piles up meanwhile.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class Sink(Protocol):
    """What a :class:`Client` feeds: typically the topology model."""

    def begin_sync(self, banner: ev.Banner) -> None:
        """A new session: everything known so far is about to be replaced."""

    def apply(self, event: ev.Event) -> None:
        """One table update."""

    def end_sync(self) -> None:
        """The full table has been received; updates follow live."""

    def connection_lost(self, reason: str) -> None:
        """The session ended; the view is stale until the next sync."""


@dataclass
class Backoff:
    """Exponential reconnect delay, pure: the caller sleeps and tells it how long sessions lasted.

    The delay resets only after a session that stayed up ``stable`` seconds.
    Resetting as soon as ``monitor`` succeeded let a babeld that breaks every
    session early (or a client bug that drops it) turn into a reconnect storm.
    """

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    stable: float = 30.0
    _next: float = 0.0

    def next_delay(self) -> float:
        """The delay before the next attempt, growing up to ``maximum``."""
        delay = self._next
        self._next = min(self.maximum, max(self.initial, self._next * self.factor))
        return delay

    def session_ended(self, lasted: float) -> None:
        """A session ended after ``lasted`` seconds: a long one earns an immediate reconnect."""
        if lasted >= self.stable:
            self.reset()

    def reset(self) -> None:
        """Reconnect at once next time."""
        self._next = 0.0


@dataclass
class ClientStats:
    """Counters an operator wants to see."""

    connects: int = 0
    reconnects: int = 0
    malformed: int = 0
    unknown: int = 0
    last_error: str = ""
    malformed_kinds: Counter[str] = field(default_factory=Counter)


class Client:
    """A long-lived, self-healing session: connect, ``monitor``, feed a sink.

    After every (re)connect the sink gets ``begin_sync`` and a full table
    (``monitor`` starts with a dump), then ``end_sync``; stale entries cannot
    survive because the sink rebuilds from scratch.

    A malformed line is skipped, counted by kind, and logged the first time
    its kind is seen; it does not end the session.  Resyncing would fetch the
    same table from the same babeld, with the same line in it: it heals
    nothing, and a line that is malformed on every connection would turn each
    resync into another (11,306 connections in 8 s before this was changed).
    """

    def __init__(self, endpoint: Endpoint, sink: Sink, backoff: Backoff | None = None,
                 pace: ReadPace | None = None) -> None:
        self.endpoint = endpoint
        self.pace = pace  # when to read again after babeld's chatter (None: as it comes)
        self.sink = sink
        self.backoff = backoff or Backoff()
        self.stats = ClientStats()
        self.connection: Connection | None = None
        self.synced = asyncio.Event()

    def poll_now(self) -> None:
        """Bring the model up to what babeld has said, if its chatter waits for a beat (see Connection)."""
        if self.connection is not None:
            self.connection.poll_now()

    async def command(self, command: str, timeout: float = 5.0) -> CommandDone:
        """Send a command on the current session (e.g. ``interface wg0``)."""
        conn = self.connection
        if conn is None or conn.closed.done() or not self.synced.is_set():
            raise BabelConnectionError(f"babeld at {self.endpoint}: not connected")
        return await conn.command(command, timeout)

    async def run(self) -> None:
        """Run until cancelled; never raises for babeld's misbehaviour."""
        loop = asyncio.get_running_loop()
        while True:
            delay = self.backoff.next_delay()
            if delay:
                await asyncio.sleep(delay)
            started = loop.time()
            try:
                await self._session()
            except BabelError as exc:
                self.stats.last_error = str(exc)
                log.warning("%s; retrying", exc)
            self.backoff.session_ended(loop.time() - started)

    def malformed(self, error: ParseError) -> None:
        """Count a malformed line; log it if it is the first of its kind."""
        self.stats.malformed += 1
        self.stats.malformed_kinds[error.kind] += 1
        if self.stats.malformed_kinds[error.kind] == 1:
            log.warning("babeld at %s sent a malformed line (%s), skipped; further ones of this kind are only "
                        "counted: %s", self.endpoint, error.kind, error)

    async def _session(self) -> None:
        conn = await Connection.open(self.endpoint, pace=self.pace)
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        log.info("connected to %s (%s, router-id %s)", self.endpoint, conn.banner.version, conn.banner.router_id)

        apply = self.sink.apply

        def handle(event: ev.Event) -> None:
            kind = type(event)
            if kind is Malformed:
                self.malformed(event.error)  # type: ignore[attr-defined]
            elif kind is ev.UnknownLine:
                self.stats.unknown += 1
                log.debug("ignoring unknown line from babeld: %r", event.line)  # type: ignore[attr-defined]
            else:
                apply(event)

        self.connection = conn
        conn.set_handler(handle)
        self.sink.begin_sync(conn.banner)
        try:
            with table_arriving():
                await conn.command("monitor", timeout=SYNC_SILENCE)
                self.sink.end_sync()
            self.synced.set()
            reason = await conn.closed
            log.warning("babeld at %s: %s", self.endpoint, reason)
        finally:
            self.synced.clear()
            self.connection = None
            await conn.wait_closed()
            self.sink.connection_lost(conn.closed.result() if conn.closed.done() else "closed")
