"""The babeld local-interface session as a sans-I/O state machine (h11 style).

Feed bytes with :meth:`BabelProtocol.receive_data`, take events with
:meth:`BabelProtocol.next_event`, and get the bytes of a command from
:meth:`BabelProtocol.send`.  No sockets, no clock, no asyncio.

States: ``BANNER`` until babeld's first ``ok`` (then one :class:`Ready`),
``READY`` afterwards, ``CLOSED`` after end of stream.  Replies are matched to
commands in order: babeld answers every command line with exactly one of
``ok``/``no``/``bad`` (``quit`` excepted), and table lines are never replies.
A malformed line becomes a :class:`Malformed` event rather than an exception,
so one bad line cannot tear down the caller's read loop; the caller counts it
and goes on.
"""

from __future__ import annotations

import enum
from collections import deque

from meshctl.babel import events as ev
from meshctl.babel.errors import ParseError
from meshctl.babel.parser import MAX_LINE, decode_text, parse_tokens, route_update
from meshctl.records import record


class State(enum.Enum):
    """Where the session is."""

    BANNER = "banner"
    READY = "ready"
    CLOSED = "closed"


@record
class Ready(ev.Event):
    """The banner is complete."""

    banner: ev.Banner


@record
class CommandDone(ev.Event):
    """babeld answered the oldest pending command."""

    command: str
    reply: str  # "ok", "no" or "bad"
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when babeld answered ``ok``."""
        return self.reply == "ok"


@record
class Malformed(ev.Event):
    """A line that could not be parsed (already logged-worthy, never raised)."""

    error: ParseError


@record
class Closed(ev.Event):
    """End of stream from babeld."""


# Commands babeld accepts on the local interface.  Read-write ones are refused
# with "bad" by a read-only socket; we let babeld be the judge of that.
_COMMANDS = ("dump", "monitor", "unmonitor", "quit", "interface", "flush")
_TABLE_VERBS = (b"add", b"change", b"flush")
_REPLIES = (ev.Ok, ev.No, ev.Bad)
_REPEAT = (b"", 0)  # what _repeat_of_last says of a repeat


class BabelProtocol:
    """One session with babeld's local interface, without I/O."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.state = State.BANNER
        self._max_line = max_line
        self._tail = b""  # the start of a line whose end has not arrived
        self._discarding = False  # inside an over-long line, skip to its end
        self._events: deque[ev.Event] = deque()
        self._pending: deque[str] = deque()
        self._tables_due = 0  # dump/monitor commands whose table is still arriving
        self._monitoring = False
        self._last: dict[bytes, int] = {}  # b"KIND ID" -> hash of the rest of its last line
        self._banner: dict[str, str] = {}
        self._banner_extra: list[str] = []
        self.lines_received = 0
        self.malformed = 0
        self.repeats = 0

    # -- output ---------------------------------------------------------

    def send(self, command: str) -> bytes:
        """Return the bytes for ``command`` and remember that a reply is due."""
        command = command.strip()
        if not command or not command.isprintable():  # refuses newlines, NUL and other controls
            raise ValueError(f"not a single-line printable command: {command!r}")
        verb = command.split()[0]
        if verb not in _COMMANDS:
            raise ValueError(f"unknown babeld command {verb!r}")
        if self.state is State.CLOSED:
            raise ValueError("session is closed")
        if command != "quit":  # babeld does not answer quit, it shuts down
            self._pending.append(command)
        if verb in ("dump", "monitor"):
            self._tables_due += 1
            self._monitoring = self._monitoring or verb == "monitor"
        return command.encode() + b"\n"  # UTF-8: interface names may be (raé0)

    @property
    def pending(self) -> tuple[str, ...]:
        """Commands sent and not yet answered, oldest first."""
        return tuple(self._pending)

    # -- input ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from babeld; ``b""`` means end of stream."""
        if self.state is State.CLOSED:
            return
        if not data:
            if self._tail and not self._discarding:
                self._malformed(ParseError("truncated last line", self._tail.decode(errors="replace"), "truncated"))
            self._tail = b""
            self.state = State.CLOSED
            self._events.append(Closed())
            return
        lines = (self._tail + data).split(b"\n") if self._tail else data.split(b"\n")
        self._tail = lines.pop()
        if self._discarding and lines:
            del lines[0]  # the end of the over-long line
            self._discarding = False
        self._lines(lines)
        if len(self._tail) > self._max_line:
            if not self._discarding:
                self._malformed(ParseError(f"line longer than {self._max_line} bytes", "", "too-long"))
            self._discarding = True
            self._tail = b""

    def next_event(self) -> ev.Event | None:
        """Return the next event, or None when all input so far is consumed."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[ev.Event]:
        """Drain and return every pending event."""
        out = list(self._events)
        self._events.clear()
        return out

    # -- internals ------------------------------------------------------

    def _malformed(self, error: ParseError) -> None:
        self.malformed += 1
        self._events.append(Malformed(error))

    def _lines(self, lines: list[bytes]) -> None:
        """Complete lines, without their newlines.

        Nine in ten lines are route lines in babeld's own shape: once the
        banner is over, each is tried first as one (:func:`route_update`, one
        regex match on the line decoded as Latin-1, which never fails: a line
        the regex takes is printable ASCII, the same text in UTF-8), after the
        repeat check on its bytes.  Any other line is read the plain way.
        """
        max_line, events, last, monitoring = self._max_line, self._events, self._last, self._monitoring
        fast = self.state is State.READY
        received = 0
        for raw in lines:
            if not fast or len(raw) > max_line:
                self._line(raw)
                fast = self.state is State.READY  # the banner's ok makes it so
                continue
            received += 1
            seen = self._repeat_of_last(raw) if monitoring else None
            if seen is _REPEAT:
                continue
            event = route_update(raw.decode("latin-1"))
            if event is None:
                self._parsed(raw, seen)
                fast = self.state is State.READY
                continue
            if seen is not None:
                last[seen[0]] = seen[1]
            events.append(event)
        self.lines_received += received

    def _line(self, raw: bytes) -> None:
        self.lines_received += 1
        if len(raw) > self._max_line:
            self._malformed(ParseError(f"line longer than {self._max_line} bytes", "", "too-long"))
            return
        seen = self._repeat_of_last(raw) if self._monitoring else None
        if seen is _REPEAT:
            return
        self._parsed(raw, seen)

    def _parsed(self, raw: bytes, seen: tuple[bytes, int] | None) -> None:
        """Decode and parse a line that is not a repeat, and remember it as ``seen`` says."""
        try:
            text = decode_text(raw)
            event = parse_tokens(text.split(), text)
        except ParseError as exc:
            self._malformed(exc)
            return
        if seen is not None:
            self._last[seen[0]] = seen[1]
        if self.state is State.BANNER:
            self._banner_line(event, raw)
        elif type(event) in _REPLIES:
            self._reply(event)  # type: ignore[arg-type]
        else:
            self._events.append(event)

    def _repeat_of_last(self, raw: bytes) -> tuple[bytes, int] | None:
        """:data:`_REPEAT` for a table line identical to the last one for its object; else what to remember.

        babeld repeats itself (955 of 974 lines in one seed-lab minute were
        copies of the line before for the same object), and a copy changes
        nothing: it is counted and dropped before it is decoded or parsed,
        from the bytes as they came (an idle daemon sees some 200 of them a
        second).  What is remembered per object (``KIND ID``) is the hash of
        its line after the verb (``add`` and ``change`` say the same thing),
        so a table costs about 100 bytes an object; two different lines with
        one 64-bit hash are not a risk worth a copy of every line.  The table
        that ``dump`` and ``monitor`` answer with is never dropped: its caller
        wants all of it.  None for lines that are not table updates (babeld
        separates words with one space; a line spaced otherwise is simply
        never taken for a repeat).
        """
        verb, _, rest = raw.partition(b" ")
        if verb not in _TABLE_VERBS:
            return None
        kind_end = rest.find(b" ")
        if kind_end <= 0:
            return None
        id_end = rest.find(b" ", kind_end + 1)
        key = rest if id_end < 0 else rest[:id_end]
        if verb == b"flush":
            self._last.pop(key, None)
            return None
        digest = hash(rest)
        if not self._tables_due and self._last.get(key) == digest:
            self.repeats += 1
            return _REPEAT
        return (key, digest)

    def _banner_line(self, event: ev.Event, raw: bytes) -> None:
        if isinstance(event, ev.ProtocolVersion):
            self._banner["protocol"] = event.version
        elif isinstance(event, ev.DaemonVersion):
            self._banner["version"] = event.version
        elif isinstance(event, ev.Host):
            self._banner["host"] = event.name
        elif isinstance(event, ev.MyId):
            self._banner["router_id"] = event.router_id
        elif isinstance(event, ev.Ok):
            if "protocol" not in self._banner:
                self._malformed(ParseError("banner ended without 'BABEL <version>'", "", "bad-banner"))
            self.state = State.READY
            self._events.append(Ready(ev.Banner(extra=tuple(self._banner_extra), **self._banner)))
        elif isinstance(event, ev.No | ev.Bad):
            self._malformed(ParseError("reply before the banner ended", raw.decode(errors="replace"), "early-reply"))
        else:
            # Lenient: a future babeld may say more in its banner.
            self._banner_extra.append(raw.decode(errors="replace"))

    def _reply(self, event: ev.Ok | ev.No | ev.Bad) -> None:
        if not self._pending:
            self._malformed(ParseError("reply with no command pending", type(event).__name__.lower(), "stray-reply"))
            return
        command = self._pending.popleft()
        if command in ("dump", "monitor"):
            self._tables_due -= 1
        if isinstance(event, ev.Ok):
            self._events.append(CommandDone(command, "ok"))
        elif isinstance(event, ev.No):
            self._events.append(CommandDone(command, "no", event.message))
        else:
            self._events.append(CommandDone(command, "bad"))
