"""The babel package's one exception root and its branches.

A :class:`ParseError` is babeld's fault (the remote): the client skips the
line, counts it by ``kind`` and logs the first of each kind.  A :class:`BabelConnectionError` is about reaching
babeld at all.  Both derive from :class:`BabelError`, so a caller that only
wants "anything babel went wrong" catches one class.
"""

from __future__ import annotations


class BabelError(Exception):
    """Root of every error raised by the ``babel`` package."""


class ParseError(BabelError):
    """A line from babeld's local interface could not be understood.

    ``line`` keeps the offending text (truncated) so logs can show it;
    ``kind`` is a short stable label (``not-utf8``, ``bad-value``, ...) that
    counters and once-per-kind logging group on, where ``reason`` carries the
    detail of this one line.
    """

    def __init__(self, reason: str, line: str = "", kind: str = "malformed") -> None:
        self.reason = reason
        self.kind = kind
        self.line = line[:200]
        super().__init__(f"{reason}: {self.line!r}" if line else reason)


class BabelConnectionError(BabelError):
    """babeld could not be reached, refused us, or went away."""


class CommandError(BabelError):
    """babeld answered a command with ``no`` or ``bad``."""

    def __init__(self, command: str, reply: str, message: str = "") -> None:
        self.command = command
        self.reply = reply
        self.message = message
        detail = f" ({message})" if message else ""
        super().__init__(f"babeld answered {reply!r} to {command!r}{detail}")
