"""Client <-> gateway control datagrams: msgpack, HMAC-SHA256, no I/O.

A client probes each candidate gateway through its uplink tunnel; the probe
also says whether that gateway is the chosen one, so the gateway's "announce
my client" state is soft and refreshed on every probe (it lapses when the
client stops talking).  The gateway answers each probe with an ack.

Wire format: ``msgpack(map) || HMAC-SHA256(secret, msgpack(map))``.  The
WireGuard tunnel already authenticates the peer; the MAC also covers
datagrams that reach the control port some other way.  Replays are refused by
a per-sender sequence number that only goes up (it starts from the wall clock
in nanoseconds, so a restarted sender continues above its old numbers) and a
timestamp window.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import msgpack

from meshctl.errors import Refused

MAC_LEN = 32
MAX_DATAGRAM = 512
MAX_SKEW = 30.0  # seconds between sender's and receiver's clocks
KINDS = ("probe", "ack")
#: What a probe asks of a gateway (and an ack says it does) for the client's addresses.
ROLE_NONE = 0  # do not announce
ROLE_STANDBY = 1  # announce with a high metric: a return path ready before it is needed
ROLE_PRIMARY = 2  # announce normally: this gateway carries the client's traffic
ROLES = (ROLE_NONE, ROLE_STANDBY, ROLE_PRIMARY)
ROLE_NAMES = {ROLE_NONE: None, ROLE_STANDBY: "standby", ROLE_PRIMARY: "primary"}  # for status


class ControlError(Refused):
    """A control datagram was refused; ``reason`` is a short counter label."""


@dataclass(frozen=True, slots=True)
class Message:
    """One control message."""

    kind: str  # "probe" or "ack"
    sender: str
    seq: int
    ts: float  # sender's wall clock, seconds
    role: int = ROLE_NONE  # probe: what the client asks; ack: what the gateway does


def encode(message: Message, secret: bytes) -> bytes:
    """Serialise and authenticate."""
    body = msgpack.packb(
        {"v": 1, "k": message.kind, "s": message.sender, "n": message.seq, "t": message.ts, "r": message.role},
        use_bin_type=True,
    )
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def decode(data: bytes, secret: bytes, now: float) -> Message:
    """Verify and parse; :class:`ControlError` for anything wrong, nothing else."""
    if len(data) > MAX_DATAGRAM:
        raise ControlError("oversized", f"{len(data)} bytes")
    if len(data) <= MAC_LEN:
        raise ControlError("truncated", f"{len(data)} bytes")
    body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise ControlError("bad-mac")
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, max_str_len=64, max_map_len=16, max_array_len=0)
    except Exception as exc:  # msgpack raises several types; all mean "malformed"
        raise ControlError("malformed", type(exc).__name__) from None
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise ControlError("malformed", "not a version-1 map")
    kind, sender, seq, ts, role = obj.get("k"), obj.get("s"), obj.get("n"), obj.get("t"), obj.get("r")
    if kind not in KINDS or not isinstance(sender, str) or not sender:
        raise ControlError("malformed", "bad kind or sender")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ControlError("malformed", "bad seq")
    if not isinstance(ts, float | int) or isinstance(ts, bool):
        raise ControlError("malformed", "bad ts")
    if isinstance(role, bool) or role not in ROLES:
        raise ControlError("malformed", "bad role")
    if abs(float(ts) - now) > MAX_SKEW:
        raise ControlError("stale", f"timestamp {ts - now:+.0f} s off")
    return Message(kind, sender, seq, float(ts), role)


class ReplayGuard:
    """Per-sender highest sequence number seen (bounded number of senders)."""

    def __init__(self, max_senders: int = 1024) -> None:
        self._last: dict[str, int] = {}
        self._max = max_senders

    def accept(self, sender: str, seq: int) -> bool:
        """True (and remember) if ``seq`` is newer than anything seen from ``sender``."""
        last = self._last.get(sender)
        if last is not None and seq <= last:
            return False
        if last is None and len(self._last) >= self._max:
            return False
        self._last[sender] = seq
        return True


class Sequence:
    """Sequence numbers that keep growing across restarts."""

    def __init__(self, start_ns: int) -> None:
        self._next = start_ns

    def next(self) -> int:
        """The next number."""
        self._next += 1
        return self._next
