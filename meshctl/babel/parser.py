"""Sans-I/O parser for babeld's local interface: one line in, one event out.

Theory of operation
-------------------
babeld writes ``verb kind id (key value)*`` lines (``local.c``); the banner and
the replies (``ok``, ``no MSG``, ``bad``) are the only other shapes.  We parse
generically instead of at fixed token positions, because consumers that used
``sscanf`` broke whenever babeld added a field: unknown keys are kept in the
event's ``extra`` with their value, unknown kinds become :class:`UnknownLine`.
Known fields are strict: a missing field, a bad number or a bad address raises
:class:`~babel.errors.ParseError`, and nothing else ever escapes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

from meshctl.babel import events as ev
from meshctl.babel.errors import ParseError

#: babeld's own reply buffer is 512 bytes; anything far longer is garbage.
MAX_LINE = 4096

_KINDS = {k.value: k for k in ev.Kind}
_intern = sys.intern


def _int(value: str, base: int = 10) -> int:
    number = int(value, base)
    if number < 0:
        raise ValueError("negative")
    return number


def _hex(value: str) -> int:
    return _int(value, 16)


def _bool(value: str) -> bool:
    if value in ("yes", "true"):
        return True
    if value in ("no", "false"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


# Addresses and prefixes are checked and kept as text (see events.Route).  babeld
# prints them with inet_ntop, which for everything but the dotted-quad IPv6 forms
# is Python's canonical spelling too, so the common case is one regex match or
# one inet_pton/inet_ntop round trip; anything else is spelled out by ipaddress.
# ASCII digits only: a str pattern's \d also takes other scripts' digits ("1\u0663.0.0.0/8"), which no
# address has and which ipaddress refuses.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_PREFIX_PATTERN = rf"{_OCTET}(?:\.{_OCTET}){{3}}/(?:3[0-2]|[12]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch
_IPV4_PREFIX = re.compile(_IPV4_PREFIX_PATTERN).fullmatch
_PREFIX_LEN6 = re.compile(r"(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])").fullmatch


def _ipv6_canonical(text: str) -> bool:
    if "." in text or "%" in text:
        return False
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text)) == text
    except (OSError, ValueError):
        return False


def address_text(value: str) -> str:
    """``value`` if it is an address in canonical spelling, else its canonical spelling (ValueError if none)."""
    if _IPV4(value) or ":" in value and _ipv6_canonical(value):
        return value
    return str(ipaddress.ip_address(value))


def prefix_text(value: str) -> str:
    """``value`` if it is a prefix in canonical spelling, else its canonical spelling (ValueError if none).

    babeld masks prefixes itself, so host bits are only cleared on the slow path.
    """
    if _IPV4_PREFIX(value):
        return value
    addr, slash, length = value.partition("/")
    if slash and _PREFIX_LEN6(length) and ":" in addr and _ipv6_canonical(addr):
        return value
    return str(ipaddress.ip_network(value, strict=False))


class _Memo:
    """Checked spellings of values that recur on every line (next hops, source prefixes).

    Emptied when full rather than evicting one by one: when a table has more
    distinct values than it holds, each line costs one missed look-up and
    one insert, never more, whatever the table's size.
    """

    def __init__(self, check: Callable[[str], str], size: int = 4096) -> None:
        self._check = check
        self._size = size
        self.known: dict[str, str] = {}  # read directly on the hot path, to save a call

    def __call__(self, value: str) -> str:
        known = self.known.get(value)
        if known is None:
            known = self._check(value)
            if len(self.known) >= self._size:
                self.known.clear()
            self.known[value] = known
        return known


_hop_text = _Memo(address_text)
_source_text = _Memo(prefix_text)


def _addr(value: str) -> ev.Address:
    return ev.address(_hop_text(value))


def _prefix(value: str) -> ev.Prefix:
    return ipaddress.ip_network(prefix_text(value))


def _rtt(value: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError("not a finite, non-negative number")
    return number


def _word(value: str) -> str:
    return value


# Per kind: field name -> (converter, required).  Keys are babeld's spelling.
_Spec = dict[str, tuple[Callable[[str], Any], bool]]

_INTERFACE: _Spec = {"up": (_bool, True), "ipv6": (_addr, False), "ipv4": (_addr, False)}
_NEIGHBOUR: _Spec = {
    "address": (_addr, True),
    "if": (_word, True),
    "reach": (_hex, True),
    "ureach": (_hex, False),
    "rxcost": (_int, True),
    "txcost": (_int, True),
    "rtt": (_rtt, False),
    "rttcost": (_int, False),
    "cost": (_int, True),
}
_ROUTE: _Spec = {
    "prefix": (prefix_text, True),
    "from": (_source_text, True),
    "installed": (_bool, True),
    "id": (_word, True),
    "metric": (_int, True),
    "refmetric": (_int, True),
    "via": (_hop_text, True),
    "if": (_word, True),
}
_XROUTE: _Spec = {"prefix": (_prefix, True), "from": (_prefix, True), "metric": (_int, True)}

_FIELDS = {"interface": _INTERFACE, "neighbour": _NEIGHBOUR, "route": _ROUTE, "xroute": _XROUTE}


def _fields(spec: _Spec, tokens: list[str], line: str) -> tuple[dict[str, Any], ev.Extra]:
    if len(tokens) % 2:
        raise ParseError(f"dangling key {tokens[-1]!r} without a value (truncated line?)", line, "dangling-key")
    values: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    for i in range(0, len(tokens), 2):
        key, raw = tokens[i], tokens[i + 1]
        if key not in spec:
            extra.append((key, raw))
            continue
        if key in values:
            raise ParseError(f"field {key!r} given twice", line, "duplicate-field")
        convert, _ = spec[key]
        try:
            values[key] = convert(raw)
        except ValueError as exc:
            raise ParseError(f"bad value for {key!r}: {raw!r} ({exc})", line, f"bad-{key}") from None
    missing = [k for k, (_, required) in spec.items() if required and k not in values]
    if missing:
        raise ParseError(f"missing field(s) {', '.join(missing)}", line, "missing-field")
    return values, tuple(extra)


def _table_update(kind: ev.Kind, what: str, rest: list[str], line: str) -> ev.Event:
    if not rest:
        raise ParseError(f"{what} line without a name or id", line, "no-id")
    ident, tokens = rest[0], rest[1:]
    values, extra = _fields(_FIELDS[what], tokens, line)
    if what == "interface":
        return ev.InterfaceUpdate(
            kind, ident, values["up"], values.get("ipv6"), values.get("ipv4"), extra
        )
    if what == "neighbour":
        return ev.NeighbourUpdate(
            kind=kind,
            id=ident,
            address=values["address"],
            interface=values["if"],
            reach=values["reach"],
            ureach=values.get("ureach", 0),
            rxcost=values["rxcost"],
            txcost=values["txcost"],
            cost=values["cost"],
            rtt=values.get("rtt"),
            rttcost=values.get("rttcost"),
            extra=extra,
        )
    if what == "route":
        route = ev.Route(values["prefix"], values["from"], values["id"], values["metric"], values["refmetric"],
                         values["via"], values["if"], values["installed"])
        return ev.RouteUpdate(kind, ident, route, extra)
    return ev.XrouteUpdate(kind, ident, values["prefix"], values["from"], values["metric"], extra)


# The route line exactly as babeld 1.12 to 1.14 writes it (local.c), one regex for the whole line.  A
# token is printable ASCII without a space, which str.split() would read as one token too; an IPv4
# prefix is checked by the regex itself (group 3), anything else in that place (group 4) by prefix_text.
_TOKEN = r"[!-~]+"
_ROUTE_LINE = re.compile(
    rf"(add|change|flush) route ({_TOKEN}) prefix (?:({_IPV4_PREFIX_PATTERN})|({_TOKEN})) "
    rf"from ({_TOKEN}) installed (yes|no) id ({_TOKEN}) metric ([0-9]+) refmetric ([0-9]+) "
    rf"via ({_TOKEN}) if ({_TOKEN})"
).fullmatch


def route_update(line: str) -> ev.RouteUpdate | None:
    """The route line exactly as babeld writes it, in one regex match; None for anything else.

    Nine in ten lines from babeld are route lines, and one match reads and
    checks all of a line's tokens at a fraction of the generic path's cost.
    Any other shape (a new field, another order, other white space, a bad
    value) returns None and goes the generic way, which also words the
    error: this is a shortcut, not a second parser.
    """
    match = _ROUTE_LINE(line)
    if match is None:
        return None
    verb, ident, prefix, other, source, installed, router_id, metric, refmetric, hop, interface = match.groups()
    try:
        if prefix is None:
            prefix = prefix_text(other)
        source = _source_text.known.get(source) or _source_text(source)  # a call only when not known yet
        hop = _hop_text.known.get(hop) or _hop_text(hop)
    except ValueError:
        return None
    # tuple.__new__ skips the NamedTuple's Python-level __new__: half the cost, same object.  A router
    # id recurs on each of its routes, an interface on thousands: interned, a table holds one copy of
    # each (100 bytes a route less), and an interned string is freed with its last route.
    route = tuple.__new__(ev.Route, (prefix, source, _intern(router_id), int(metric), int(refmetric), hop,
                                     _intern(interface), installed == "yes"))
    event = _new(ev.RouteUpdate)
    _set_kind(event, _KINDS[verb])
    _set_id(event, ident)
    _set_route(event, route)
    _set_extra(event, ())
    return event


# A RouteUpdate made field by field through its slots: what its frozen dataclass __init__ does, each
# field through object.__setattr__ and a look-up along the class's bases, without those look-ups
# (15 % of reading a route line).  Same class, same fields, equal to one made the usual way; a field
# added to RouteUpdate must be added here (checked below, when this is imported).
_new = object.__new__
_set_kind, _set_id, _set_route, _set_extra = (vars(ev.RouteUpdate)[name].__set__
                                              for name in ("kind", "id", "route", "extra"))
if [f.name for f in dataclasses.fields(ev.RouteUpdate)] != ["kind", "id", "route", "extra"]:
    raise ImportError("meshctl.babel.parser: RouteUpdate's fields changed; update route_update()")


def _single(tokens: list[str], line: str) -> str:
    if len(tokens) != 2:
        raise ParseError(f"expected exactly one value after {tokens[0]!r}", line, "bad-banner")
    return tokens[1]


def parse_line(line: str) -> ev.Event:
    """Parse one line (without its newline) into an event.

    Raises :class:`ParseError` for a malformed line; never anything else.
    """
    if len(line) > MAX_LINE:
        raise ParseError(f"line longer than {MAX_LINE} characters", line, "too-long")
    return route_update(line) or parse_tokens(line.split(), line)


def parse_tokens(tokens: list[str], line: str) -> ev.Event:
    """Parse a line already split into ``tokens`` (``line.split()``), for a caller that split it anyway."""
    if not tokens:
        raise ParseError("empty line", line, "empty")
    head = tokens[0]
    if head in _KINDS:
        if len(tokens) < 2:
            raise ParseError(f"{head!r} without an object kind", line, "no-object-kind")
        what = tokens[1]
        if what == "route" and (fast := route_update(line)) is not None:
            return fast
        if what not in _FIELDS:
            return ev.UnknownLine(line)
        return _table_update(_KINDS[head], what, tokens[2:], line)
    if head == "ok" and len(tokens) == 1:
        return ev.Ok()
    if head == "no":
        return ev.No(line[2:].strip())
    if head == "bad" and len(tokens) == 1:
        return ev.Bad()
    if head == "BABEL":
        return ev.ProtocolVersion(_single(tokens, line))
    if head == "version":
        return ev.DaemonVersion(_single(tokens, line))
    if head == "host":
        return ev.Host(_single(tokens, line))
    if head == "my-id":
        return ev.MyId(_single(tokens, line))
    return ev.UnknownLine(line)


def decode_text(raw: bytes) -> str:
    """One raw line (bytes, newline stripped) as text; :class:`ParseError` if it cannot be.

    UTF-8, not ASCII: Linux allows any bytes but ``/``, ``:``, NUL and
    white space in an interface name (``raé0``), and babeld prints names as
    they are.  A name that is not UTF-8 at all makes the line malformed.
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ParseError("line is not UTF-8", raw.decode(errors="replace"), "not-utf8") from None
    if "\x00" in text:
        raise ParseError("line contains a NUL byte", text, "nul-byte")
    return text.rstrip("\r")


def decode_line(raw: bytes) -> ev.Event:
    """Decode one raw line (bytes, newline stripped) and parse it."""
    return parse_line(decode_text(raw))
