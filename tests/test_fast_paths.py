"""The fast paths of a big table against the plain ways they replace, on generated tables.

Each shortcut (a route line read by one regex, an ASCII read decoded at once, a
lone route held without a list, routes sorted by prefix, a route's JSON from a
template) must give exactly what the plain way gives: the same events, the
same model, the same bytes.
"""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.babel import events as ev
from meshctl.babel.errors import ParseError
from meshctl.babel.parser import _table_update, parse_line, route_update
from meshctl.babel.protocol import BabelProtocol, Malformed
from meshctl.topology.export import _route_texts, _router_texts, iter_render, render, to_json
from meshctl.topology.model import TopologyModel, route_order

BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost vm\nmy-id 02:00:00:00:00:00:00:01\nok\n"

_PREFIXES = st.one_of(
    st.builds(lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)), st.ip_addresses(v=4),
              st.integers(0, 32)),
    st.builds(lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)), st.ip_addresses(v=6),
              st.integers(0, 128)),
    st.sampled_from(["10.0.0.1/24", "FD00::/8", "fd00:0::/16", "1.2.3.4/33", "01.2.3.4/8", "1\u0663.0.0.0/8",
                     "fe80::/1\u0662", "::ffff:10.0.0.0/104", "x"]),
)
_HOPS = st.sampled_from(["fe80::1", "fe80::2", "10.0.0.1", "FE80::3", "::ffff:10.0.0.1", "fe80::zz"])
_SOURCES = st.sampled_from(["0.0.0.0/0", "::/0", "10.0.0.0/8", "fd00::/8", "::/129"])
# Names as babeld prints them: anything but white space, UTF-8 included (a quote, a backslash, raé0).
_NAMES = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8)
_NUMBERS = st.sampled_from(["0", "96", "65534", "65535", "70000", "-1", "+5", "1_0", "\u0663", "x"])


@st.composite
def route_lines(draw: st.DrawFn) -> str:
    """A route line as babeld writes it, or one field or separator off."""
    fields = [
        ("prefix", draw(_PREFIXES)), ("from", draw(_SOURCES)),
        ("installed", draw(st.sampled_from(["yes", "no", "true", "maybe"]))), ("id", draw(_NAMES)),
        ("metric", draw(_NUMBERS)), ("refmetric", draw(_NUMBERS)), ("via", draw(_HOPS)), ("if", draw(_NAMES)),
    ]
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    if draw(st.integers(0, 9)) == 0:
        fields.append(("weight", "7"))
    sep = draw(st.sampled_from([" "] * 8 + ["  ", "\t"]))
    verb = draw(st.sampled_from(["add", "change", "flush"]))
    return sep.join([verb, "route", draw(st.sampled_from(["5565bde61c50", "1", "z"]))] + [t for kv in fields for t in kv])


def generic(line: str) -> object:
    """What the plain token-by-token path reads from a route line (the error's kind if it refuses it)."""
    try:
        tokens = line.split()
        return _table_update(ev.Kind(tokens[0]), "route", tokens[2:], line)
    except ParseError as exc:
        return exc.kind


@settings(max_examples=400, deadline=None)
@given(route_lines())
def test_the_route_regex_reads_what_the_generic_path_reads(line: str) -> None:
    fast = route_update(line)
    if fast is not None:
        assert fast == generic(line)
    try:
        parsed: object = parse_line(line)
    except ParseError as exc:
        parsed = exc.kind
    assert parsed == generic(line)


def _shown(events: list[ev.Event]) -> list[object]:
    return [("malformed", e.error.kind) if isinstance(e, Malformed) else e for e in events]


@settings(max_examples=150, deadline=None)
@given(st.lists(route_lines(), max_size=30), st.lists(st.sampled_from([b"ok", b"\xff", b"x\x00", b"no", b"\r"]),
                                                       max_size=3),
       st.integers(1, 400), st.booleans())
def test_a_read_gives_what_line_by_line_gives(lines: list[str], odd: list[bytes], cut: int, monitor: bool) -> None:
    """Whole ASCII reads take the fast way; one at a time through the plain per-line way, the same events."""
    raw = [line.encode() for line in lines] + odd
    raw = raw + raw  # repeats, for the monitor's filter
    data = b"".join(line + b"\n" for line in raw)
    command = "monitor" if monitor else "dump"

    fast = BabelProtocol()
    fast.send(command)
    fast.receive_data(BANNER)
    for i in range(0, len(data), cut):
        fast.receive_data(data[i : i + cut])
    plain = BabelProtocol()
    plain.send(command)
    plain.receive_data(BANNER)
    for line in raw:
        plain._line(line)
    assert _shown(fast.events()) == _shown(plain.events())
    assert (fast.lines_received, fast.repeats, fast.malformed) == (plain.lines_received, plain.repeats, plain.malformed)


def test_monitor_repeats_after_the_table_are_dropped_on_the_fast_way_too() -> None:
    line = (b"add route 1 prefix 10.0.0.0/8 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 metric 96 "
            b"refmetric 0 via fe80::1 if wg0\n")
    p = BabelProtocol()
    p.send("monitor")
    p.receive_data(BANNER + line + b"ok\n")
    assert len(p.events()) == 3  # ready, the table's route, then monitor's ok
    p.receive_data(line.replace(b"add", b"change") * 3)
    assert p.events() == [] and p.repeats == 3
    p.receive_data(line.replace(b"metric 96", b"metric 97"))
    assert len(p.events()) == 1


# -- the model and its JSON -------------------------------------------------------

_ROUTES = st.builds(
    ev.Route,
    st.one_of(st.sampled_from(["10.0.0.0/8", "10.0.0.0/16", "0.0.0.0/0", "::/0", "fd00::/8", "10.0.0.1/32"]),
              _PREFIXES.filter(lambda p: _is_prefix(p))),
    st.sampled_from(["0.0.0.0/0", "::/0", "10.0.0.0/8"]),
    _NAMES,
    st.sampled_from([0, 1, 96, 65534, 65535]),
    st.sampled_from([0, 96, 65535]),
    st.sampled_from(["fe80::1", "fe80::2", "10.0.0.1"]),
    st.sampled_from(["wg0", "wg1", "raé0", 'a"b\\c']),
    st.booleans(),
)


def _is_prefix(text: str) -> bool:
    try:
        return str(ipaddress.ip_network(text)) == text
    except ValueError:
        return False


def _plain_model(events: list[tuple[ev.Kind, ev.Route]]) -> dict[ev.RouteKey, ev.Route]:
    """The table as a plain dict keyed by the route's stable key: what the model must hold."""
    table: dict[ev.RouteKey, ev.Route] = {}
    for kind, route in events:
        if kind is ev.Kind.FLUSH:
            table.pop(route.key, None)
        else:
            table[route.key] = route
    return table


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(ev.Kind)), _ROUTES), max_size=40))
def test_the_model_holds_what_a_plain_dict_holds(events: list[tuple[ev.Kind, ev.Route]]) -> None:
    model = TopologyModel()
    for kind, route in events:
        model.apply(ev.RouteUpdate(kind, "1", route))
    table = _plain_model(events)
    assert model.routes == table and model.route_count == len(table)
    routers: dict[str, set[str]] = {}
    for route in table.values():
        routers.setdefault(route.router_id, set()).add(route.prefix_text)
    assert model.routers() == routers
    for prefix in {r.prefix_text for r in table.values()}:
        assert sorted(model.routes_for(prefix)) == sorted(r for r in table.values() if r.prefix_text == prefix)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ROUTES, max_size=40))
def test_sorted_routes_and_their_json_are_what_the_plain_ways_give(routes: list[ev.Route]) -> None:
    model = TopologyModel()
    for route in routes:
        model.apply(ev.RouteUpdate(ev.Kind.ADD, "1", route))
    ordered = list(model.sorted_routes())
    assert ordered == sorted(model.iter_routes(), key=route_order)
    by_ipaddress = sorted(model.iter_routes(), key=lambda r: (r.prefix.version, r.prefix, r.src_text, r.metric,
                                                               r.via_text, r.interface))
    assert ordered == by_ipaddress
    encode = json.JSONEncoder().encode
    assert list(_route_texts(model)) == [encode(d) for d in to_json(model)["routes"]]
    assert list(_router_texts(model)) == [encode(d) for d in to_json(model)["routers"]]
    assert "".join(iter_render(model, "json")) == render(model, "json")
