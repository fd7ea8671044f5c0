"""The sans-I/O line parser: every line kind, real captures, malformed input."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.babel import events as ev
from meshctl.babel.errors import ParseError
from meshctl.babel.parser import MAX_LINE, _table_update, address_text, decode_line, parse_line, prefix_text

ROUTE = (
    "add route 5565bde61c50 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes "
    "id bc:80:ca:61:33:02:30:99 metric 101 refmetric 0 via fe80::3 if wgcs1"
)
NEIGHBOUR = (
    "add neighbour 5565bde60a00 address fe80::5 if wgcs2 reach ff00 ureach 0000 "
    "rxcost 96 txcost 96 rtt 8.738 rttcost 0 cost 96"
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("BABEL 1.0", ev.ProtocolVersion("1.0")),
        ("version babeld-1.12.1", ev.DaemonVersion("babeld-1.12.1")),
        ("host vm", ev.Host("vm")),
        ("my-id d8:08:5e:d6:d4:44:ee:e6", ev.MyId("d8:08:5e:d6:d4:44:ee:e6")),
        ("ok", ev.Ok()),
        ("no", ev.No("")),
        ("no No such interface", ev.No("No such interface")),
        ("bad", ev.Bad()),
    ],
)
def test_banner_and_replies(line: str, expected: ev.Event) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("kind", list(ev.Kind))
def test_interface_every_kind(kind: ev.Kind) -> None:
    e = parse_line(f"{kind.value} interface wg0 up true ipv6 fe80::1 ipv4 10.0.0.1")
    assert e == ev.InterfaceUpdate(
        kind, "wg0", True, ipaddress.ip_address("fe80::1"), ipaddress.ip_address("10.0.0.1")
    )


def test_interface_down_has_no_addresses() -> None:
    assert parse_line("flush interface wg0 up false") == ev.InterfaceUpdate(ev.Kind.FLUSH, "wg0", False)


def test_neighbour_with_rtt() -> None:
    e = parse_line(NEIGHBOUR)
    assert isinstance(e, ev.NeighbourUpdate)
    assert e.key == (ipaddress.ip_address("fe80::5"), "wgcs2")
    assert (e.reach, e.ureach, e.rxcost, e.txcost, e.cost) == (0xFF00, 0, 96, 96, 96)
    assert e.rtt == pytest.approx(8.738)
    assert e.rttcost == 0


def test_neighbour_without_rtt_until_a_sample_exists() -> None:
    e = parse_line("change neighbour 1 address fe80::5 if wg reach 8000 ureach 0000 rxcost 65535 txcost 65535 cost 65535")
    assert isinstance(e, ev.NeighbourUpdate)
    assert e.rtt is None and e.rttcost is None
    assert e.kind is ev.Kind.CHANGE


@pytest.mark.parametrize("kind", list(ev.Kind))
def test_route_every_kind(kind: ev.Kind) -> None:
    e = parse_line(ROUTE.replace("add", kind.value, 1))
    assert isinstance(e, ev.RouteUpdate)
    assert e.kind is kind and e.id == "5565bde61c50"
    r = e.route
    assert r == ev.Route("10.99.0.1/32", "0.0.0.0/0", "bc:80:ca:61:33:02:30:99", 101, 0, "fe80::3", "wgcs1", True)
    assert r.prefix == ipaddress.ip_network("10.99.0.1/32")
    assert r.src_prefix == ipaddress.ip_network("0.0.0.0/0")
    assert r.via == ipaddress.ip_address("fe80::3")
    assert e.key == ("10.99.0.1/32", "0.0.0.0/0", "fe80::3", "wgcs1")
    assert r.reachable


def test_installed_route_with_infinite_metric_is_unreachable() -> None:
    e = parse_line(ROUTE.replace("metric 101", "metric 65535"))
    assert isinstance(e, ev.RouteUpdate)
    assert e.route.installed and not e.route.reachable


def test_ipv6_source_specific_route() -> None:
    e = parse_line(
        "add route 1 prefix ::/0 from 2001:db8::/48 installed no id 02:00:00:00:00:00:00:01 "
        "metric 300 refmetric 200 via fe80::9 if wg1"
    )
    assert isinstance(e, ev.RouteUpdate)
    assert e.route.src_prefix == ipaddress.ip_network("2001:db8::/48")


@pytest.mark.parametrize("kind", list(ev.Kind))
def test_xroute(kind: ev.Kind) -> None:
    e = parse_line(f"{kind.value} xroute 10.98.0.1/32-0.0.0.0/0 prefix 10.98.0.1/32 from 0.0.0.0/0 metric 0")
    assert e == ev.XrouteUpdate(
        kind, "10.98.0.1/32-0.0.0.0/0", ipaddress.ip_network("10.98.0.1/32"), ipaddress.ip_network("0.0.0.0/0"), 0
    )


def test_unknown_keys_are_kept_with_their_value() -> None:
    e = parse_line(ROUTE + " weight 7 colour blue")
    assert isinstance(e, ev.RouteUpdate)
    assert e.extra == (("weight", "7"), ("colour", "blue"))
    assert e.route.metric == 101


def test_fields_in_any_order() -> None:
    e = parse_line("add xroute x metric 5 from ::/0 prefix fd00::/8")
    assert isinstance(e, ev.XrouteUpdate) and e.metric == 5


@pytest.mark.parametrize("line", ["add tunnel 1 foo bar", "frobnicate now", "add"])
def test_unknown_kinds_are_not_errors(line: str) -> None:
    if line == "add":
        with pytest.raises(ParseError):
            parse_line(line)
    else:
        assert parse_line(line) == ev.UnknownLine(line)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty"),
        (ROUTE[: ROUTE.index(" if wgcs1")] + " if", "dangling key"),  # truncated mid-pair
        (ROUTE.replace(" via fe80::3", ""), "missing field"),
        (ROUTE.replace("metric 101", "metric lots"), "bad value for 'metric'"),
        (ROUTE.replace("metric 101", "metric -1"), "bad value for 'metric'"),
        (ROUTE.replace("fe80::3", "fe80::zz"), "bad value for 'via'"),
        (ROUTE.replace("10.99.0.1/32", "10.99.0.1/33"), "bad value for 'prefix'"),
        (ROUTE.replace("installed yes", "installed maybe"), "bad value for 'installed'"),
        (NEIGHBOUR.replace("reach ff00", "reach ffgg"), "bad value for 'reach'"),
        (NEIGHBOUR.replace("rtt 8.738", "rtt nan"), "bad value for 'rtt'"),
        (NEIGHBOUR + " cost 5", "given twice"),
        ("add route", "without a name or id"),
        ("BABEL", "exactly one value"),
        ("x" * (MAX_LINE + 1), "longer than"),
    ],
)
def test_malformed_lines_raise_parse_error(line: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        parse_line(line)
    assert info.value.line == line[:200]


def test_decode_rejects_non_utf8_and_nul() -> None:
    with pytest.raises(ParseError, match="not UTF-8") as info:
        decode_line("add route \xff".encode("latin-1"))
    assert info.value.kind == "not-utf8"
    with pytest.raises(ParseError, match="NUL"):
        decode_line(b"ok\x00")


def test_utf8_interface_names_parse() -> None:
    """Linux allows UTF-8 in interface names, and babeld prints them as they are."""
    name = "ra\u00e90"
    interface = decode_line(f"add interface {name} up true ipv6 fe80::1".encode())
    assert isinstance(interface, ev.InterfaceUpdate) and interface.name == name
    neighbour = decode_line(
        f"add neighbour 5565 address fe80::5 if {name} reach ff00 ureach 0000 rxcost 96 txcost 96 cost 96".encode()
    )
    assert isinstance(neighbour, ev.NeighbourUpdate) and neighbour.interface == name
    route = decode_line(
        f"add route 1 prefix 10.0.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 metric 96 "
        f"refmetric 0 via fe80::5 if {name}".encode()
    )
    assert isinstance(route, ev.RouteUpdate) and route.route.interface == name


def test_decode_strips_carriage_return() -> None:
    assert decode_line(b"ok\r") == ev.Ok()


def test_every_line_of_a_real_dump_parses(real_dump: bytes) -> None:
    events = [decode_line(line) for line in real_dump.splitlines()]
    assert not any(isinstance(e, ev.UnknownLine) for e in events)
    kinds = {type(e) for e in events}
    assert {ev.InterfaceUpdate, ev.NeighbourUpdate, ev.RouteUpdate, ev.XrouteUpdate, ev.Ok} <= kinds


def test_every_line_of_a_real_monitor_session_parses(real_monitor: bytes) -> None:
    events = [decode_line(line) for line in real_monitor.splitlines()]
    changes = [e for e in events if isinstance(e, ev.RouteUpdate) and e.kind is ev.Kind.CHANGE]
    assert changes, "the capture holds the link cut"
    assert any(e.route.installed and not e.route.reachable for e in changes)


# -- property tests: nothing but ParseError ever escapes ---------------------

_TOKENS = st.sampled_from(
    ["add", "change", "flush", "route", "neighbour", "xroute", "interface", "prefix", "from", "via", "if",
     "metric", "refmetric", "installed", "yes", "no", "id", "reach", "rtt", "cost", "rxcost", "txcost",
     "address", "up", "true", "ipv6", "ipv4", "ok", "bad", "BABEL", "host", "my-id", "version",
     "10.0.0.0/8", "fe80::1", "::/0", "65535", "-1", "ffff", "1e999", "nan", "0x10", "1/2", ""]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TOKENS | st.text(max_size=12), max_size=24))
def test_token_soup_never_raises_anything_else(tokens: list[str]) -> None:
    with contextlib.suppress(ParseError):
        parse_line(" ".join(tokens))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_line(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(ROUTE)))
def test_every_truncation_of_a_route_is_an_error_or_a_route(cut: int) -> None:
    try:
        e = parse_line(ROUTE[:cut])
    except ParseError:
        return
    # Some cuts still form a complete line ("if wgcs" is a fine interface name).
    assert isinstance(e, ev.RouteUpdate | ev.UnknownLine)


# -- addresses as canonical text, and the positional shortcut ---------------


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_address_text_is_pythons_canonical_spelling(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address_text(str(address)) == str(address)
    assert address_text(address.exploded) == str(address)  # long forms are spelled out, not refused


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(), st.integers(0, 128))
def test_prefix_text_is_pythons_canonical_spelling(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                                   length: int) -> None:
    network = ipaddress.ip_network(f"{address}/{min(length, address.max_prefixlen)}", strict=False)
    assert prefix_text(str(network)) == str(network)


@pytest.mark.parametrize("bad", ["10.0.0.256/24", "10.0.0.0/33", "10.0.0.0/", "fe80::zz/64", "::/129", "01.2.3.4/8", ""])
def test_prefix_text_refuses_what_is_not_a_prefix(bad: str) -> None:
    with pytest.raises(ValueError):
        prefix_text(bad)


_HOPS = st.sampled_from(["fe80::3", "fe80::1:2", "10.0.0.1", "FE80::3", "fe80:0::3", "::ffff:10.0.0.1", "fe80::zz"])
_PREFIXES = st.sampled_from(["10.99.0.1/32", "0.0.0.0/0", "fd00::/8", "::/0", "10.0.0.1/24", "FD00::/8", "1.2.3.4/33"])


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["add", "change", "flush"]), prefix=_PREFIXES, source=_PREFIXES, via=_HOPS,
       metric=st.sampled_from(["0", "96", "65535", "-1", "x", "+5"]), installed=st.sampled_from(["yes", "no", "maybe"]))
def test_the_positional_shortcut_reads_what_the_generic_path_reads(
    kind: str, prefix: str, source: str, via: str, metric: str, installed: str
) -> None:
    line = (f"{kind} route 55 prefix {prefix} from {source} installed {installed} id 02:00:00:00:00:00:00:01 "
            f"metric {metric} refmetric 0 via {via} if wg0")
    try:
        generic: object = _table_update(ev.Kind(kind), "route", line.split()[2:], line)
    except ParseError as exc:
        generic = type(exc)
    try:
        parsed: object = parse_line(line)
    except ParseError as exc:
        parsed = type(exc)
    assert parsed == generic
