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

import functools
import ipaddress
import math
from collections.abc import Callable
from typing import Any

from meshctl.babel import events as ev
from meshctl.babel.errors import ParseError

#: babeld's own reply buffer is 512 bytes; anything far longer is garbage.
MAX_LINE = 4096

_KINDS = {k.value: k for k in ev.Kind}


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


# babeld repeats the same few addresses and prefixes in every change line, and
# ipaddress parsing dominated the profile: cache it (the objects are immutable).
@functools.lru_cache(maxsize=1 << 16)
def _addr(value: str) -> ev.Address:
    # babeld prints v4-mapped addresses as plain IPv4; scope ids never appear.
    return ipaddress.ip_address(value)


@functools.lru_cache(maxsize=1 << 16)
def _prefix(value: str) -> ev.Prefix:
    return ipaddress.ip_network(value, strict=False)


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
    "prefix": (_prefix, True),
    "from": (_prefix, True),
    "installed": (_bool, True),
    "id": (_word, True),
    "metric": (_int, True),
    "refmetric": (_int, True),
    "via": (_addr, True),
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
        return ev.RouteUpdate(
            kind=kind,
            id=ident,
            prefix=values["prefix"],
            src_prefix=values["from"],
            installed=values["installed"],
            router_id=values["id"],
            metric=values["metric"],
            refmetric=values["refmetric"],
            via=values["via"],
            interface=values["if"],
            extra=extra,
        )
    return ev.XrouteUpdate(kind, ident, values["prefix"], values["from"], values["metric"], extra)


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
    tokens = line.split()
    if not tokens:
        raise ParseError("empty line", line, "empty")
    head = tokens[0]
    if head in _KINDS:
        if len(tokens) < 2:
            raise ParseError(f"{head!r} without an object kind", line, "no-object-kind")
        what = tokens[1]
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


def decode_line(raw: bytes) -> ev.Event:
    """Decode one raw line (bytes, newline stripped) and parse it.

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
    return parse_line(text.rstrip("\r"))
