"""The topology model, fed with parsed events (plain function calls)."""

from __future__ import annotations

import ipaddress

from meshctl.babel import events as ev
from meshctl.babel.parser import decode_line, parse_line
from meshctl.babel.protocol import BabelProtocol
from meshctl.topology.model import INFINITY, MeshView, SelfInfo, TopologyModel, route_order

ME = "02:6d:63:6c:00:00:00:01"
GW1 = "02:6d:63:6c:00:00:00:02"
GW2 = "02:6d:63:6c:00:00:00:03"
UP = "02:6d:63:6c:00:00:00:04"
net = ipaddress.ip_network
addr = ipaddress.ip_address


def model_from(data: bytes) -> TopologyModel:
    m = TopologyModel(SelfInfo(ME, "vm", "babeld-1.12.1"))
    for line in data.splitlines():
        e = decode_line(line)
        m.apply(e)
    return m


def route(prefix: str, rid: str, metric: int, via: str, ifname: str, installed: bool = True, kind: str = "add",
          refmetric: int = 0, rid_hex: str = "1") -> str:
    return (
        f"{kind} route {rid_hex} prefix {prefix} from {'::/0' if ':' in prefix else '0.0.0.0/0'} "
        f"installed {'yes' if installed else 'no'} id {rid} metric {metric} refmetric {refmetric} via {via} if {ifname}"
    )


def neighbour(address: str, ifname: str, cost: int, kind: str = "add", nid: str = "a") -> str:
    return (
        f"{kind} neighbour {nid} address {address} if {ifname} reach ffff ureach 0000 "
        f"rxcost {cost} txcost {cost} cost {cost}"
    )


def test_real_dump_gives_neighbours_routes_and_graph(real_dump: bytes) -> None:
    m = model_from(real_dump)
    assert set(m.interfaces) == {"sd1w1-2", "sd1w1-3"}
    assert {k[1] for k in m.neighbours} == {"sd1w1-2", "sd1w1-3"}
    assert m.neighbour_router_id((addr("fe80::2"), "sd1w1-2")) == GW1
    assert m.neighbour_router_id((addr("fe80::3"), "sd1w1-3")) == GW2
    # The graph: me -> gw1, me -> gw2; the upstream is known as a router.
    assert set(m.graph.successors(ME)) == {GW1, GW2}
    assert m.graph.has_node(UP)
    assert net("10.200.0.0/24") in m.graph.nodes[UP]["prefixes"]
    installed = m.installed_routes()
    assert installed[net("10.200.0.0/24")].via == addr("fe80::3")
    assert len(m.xroutes) == 2


def test_metric_toward_router_and_prefix_through_each_neighbour(real_dump: bytes) -> None:
    m = model_from(real_dump)
    by_hop = m.metrics_by_neighbour(UP)
    assert by_hop == {(addr("fe80::3"), "sd1w1-3"): 192, (addr("fe80::2"), "sd1w1-2"): 194}
    assert m.metrics_by_neighbour(net("10.200.0.0/24")) == by_hop
    assert m.best_metric(UP) == 192
    assert m.best_metric("no:such") == INFINITY


def test_link_cut_makes_routes_unreachable_and_installed_moves(real_dump: bytes, real_monitor: bytes) -> None:
    m = model_from(real_dump)
    for line in real_monitor.splitlines():
        e = decode_line(line)
        m.apply(e)
    gw2_link = m.neighbours[(addr("fe80::3"), "sd1w1-3")]
    assert not gw2_link.reachable
    best = m.installed_route(net("10.200.0.0/24"))
    assert best is not None and best.via == addr("fe80::2")
    # metric 65535 with installed yes is not an installed route
    unreachable = [r for r in m.routes.values() if r.installed and not r.reachable]
    for r in unreachable:
        assert m.installed_route(r.prefix) != r


def test_identical_changes_are_absorbed() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    graph_before = m.graph.copy()
    for _ in range(5):
        m.apply(parse_line(neighbour("fe80::2", "wg1", 96, kind="change")))
    assert m.graph.edges == graph_before.edges
    assert m.events_applied == 6


def test_flush_removes_neighbour_and_its_edge() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")))
    assert m.graph.has_edge(ME, GW1, key="wg1")
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96, kind="flush")))
    assert not m.graph.has_edge(ME, GW1)
    assert m.graph.has_node(GW1)  # still a route originator
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1", kind="flush")))
    assert not m.graph.has_node(GW1)
    assert m.routes == {} and m.routers() == {}


def test_neighbour_named_by_address_until_its_router_id_is_known() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    assert m.graph.has_edge(ME, "fe80::2%wg1")
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")))
    assert not m.graph.has_node("fe80::2%wg1")
    assert m.graph.has_edge(ME, GW1, key="wg1")
    assert m.graph.edges[ME, GW1, "wg1"]["cost"] == 96


def test_neighbour_behind_one_interface_changes_router_id() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")))
    m.apply(parse_line(route("10.99.0.9/32", GW2, 96, "fe80::2", "wg1")))  # peer restarted with a new id
    assert m.graph.has_edge(ME, GW2, key="wg1")
    assert not m.graph.has_edge(ME, GW1)


def test_route_ids_are_not_identity() -> None:
    # babeld reuses heap addresses: the same id for a different route is a different route.
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(route("10.0.0.1/32", GW1, 100, "fe80::2", "wg1", rid_hex="55")))
    m.apply(parse_line(route("10.0.0.2/32", GW2, 100, "fe80::3", "wg2", rid_hex="55")))
    assert len(m.routes) == 2


def test_two_neighbours_one_prefix_best_first() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(route("0.0.0.0/0", UP, 300, "fe80::2", "wg1", installed=False, refmetric=200)))
    m.apply(parse_line(route("0.0.0.0/0", UP, 200, "fe80::3", "wg2", installed=True, refmetric=100)))
    assert [r.metric for r in m.routes_for(net("0.0.0.0/0"))] == [200, 300]
    assert m.installed_route(net("0.0.0.0/0")).interface == "wg2"


def test_meshview_swaps_in_a_fresh_model_after_resync(real_dump: bytes) -> None:
    view = MeshView()

    def feed(data: bytes) -> None:
        p = BabelProtocol()
        p.send("monitor")
        p.receive_data(data)
        view.replay(p.events())

    feed(real_dump)
    assert len(view.model.routes) == 16 and view.synced
    view.connection_lost("babeld restarted")
    assert not view.synced and len(view.model.routes) == 16  # stale but kept
    # babeld came back knowing less: nothing stale may survive the resync.
    short = b"BABEL 1.0\nversion babeld-1.12.1\nhost vm\nmy-id " + ME.encode() + b"\nok\n"
    short += (neighbour("fe80::2", "sd1w1-2", 96) + "\n").encode() + b"ok\n"
    feed(short)
    assert view.synced and view.syncs == 2
    assert view.model.routes == {}
    assert list(view.model.neighbours) == [(addr("fe80::2"), "sd1w1-2")]


def test_ignores_non_table_events() -> None:
    m = TopologyModel()
    m.apply(ev.Ok())
    m.apply(ev.UnknownLine("add tunnel 1"))
    assert m.events_applied == 0


def live_view() -> MeshView:
    view = MeshView()
    view.begin_sync(ev.Banner(router_id=ME))
    view.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    view.end_sync()
    return view


def test_listeners_hear_only_of_changes() -> None:
    view = live_view()
    heard: list[str] = []
    view.listeners.append(lambda: heard.append("any"))
    line = route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")
    view.apply(parse_line(line))
    view.apply(parse_line(line.replace("add", "change", 1)))  # the same route again
    view.apply(parse_line(neighbour("fe80::2", "wg1", 96, kind="change")))
    assert heard == ["any"]


def test_a_watch_hears_of_its_prefixes_its_routers_and_resyncs_only() -> None:
    view = live_view()
    heard: list[str] = []
    stop = view.watch(lambda: heard.append("gw"), prefixes=[net("10.99.0.2/32")], routers=[GW2])
    view.apply(parse_line(route("10.99.0.7/32", UP, 96, "fe80::2", "wg1")))  # someone else's route
    assert heard == []
    view.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")))
    view.apply(parse_line(route("10.99.0.3/32", GW2, 96, "fe80::2", "wg1")))
    view.apply(parse_line(route("10.99.0.2/32", GW2, 96, "fe80::2", "wg1", kind="change")))  # both: heard once
    assert heard == ["gw", "gw", "gw"]
    view.apply(parse_line(route("10.99.0.7/32", GW1, 96, "fe80::2", "wg1", kind="change")))  # moved from UP to GW1
    assert heard == ["gw", "gw", "gw"]
    view.apply(parse_line(route("10.99.0.7/32", GW2, 96, "fe80::2", "wg1", kind="change")))  # ... and on to GW2
    assert heard == ["gw"] * 4
    view.begin_sync(ev.Banner(router_id=ME))
    view.end_sync()
    assert heard == ["gw"] * 5
    stop()
    view.apply(parse_line(route("10.99.0.2/32", GW1, 99, "fe80::2", "wg1", kind="change")))
    assert heard == ["gw"] * 5


def test_routes_are_kept_as_text_and_counted() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1")))
    m.apply(parse_line(route("10.99.0.2/32", GW1, 160, "fe80::3", "wg2")))
    assert m.route_count == 2 and m.routers() == {GW1: {"10.99.0.2/32"}}
    assert m.routes_for("10.99.0.2/32") == m.routes_for(net("10.99.0.2/32"))
    m.apply(parse_line(route("10.99.0.2/32", GW1, 96, "fe80::2", "wg1", kind="flush")))
    assert m.route_count == 1 and m.routers() == {GW1: {"10.99.0.2/32"}}  # the other route still keeps it
    m.apply(parse_line(route("10.99.0.2/32", GW1, 160, "fe80::3", "wg2", kind="flush")))
    assert m.route_count == 0 and m.routers() == {} and m.routes == {}


def test_route_order_sorts_as_ipaddress_does() -> None:
    m = TopologyModel(SelfInfo(ME))
    for p in ("10.0.0.0/8", "fd00::/8", "9.0.0.0/8", "10.0.0.0/16", "::/0", "0.0.0.0/0"):
        m.apply(parse_line(route(p, GW1, 96, "fe80::2", "wg1")))
    ordered = sorted(m.iter_routes(), key=route_order)
    assert [r.prefix for r in ordered] == sorted((r.prefix for r in ordered), key=lambda p: (p.version, p))


def test_the_graph_is_built_when_asked_and_kept_until_a_change() -> None:
    m = TopologyModel(SelfInfo(ME))
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96)))
    first = m.graph
    assert m.graph is first
    m.apply(parse_line(neighbour("fe80::2", "wg1", 96, kind="change")))  # nothing changed
    assert m.graph is first
    m.apply(parse_line(neighbour("fe80::2", "wg1", 100, kind="change")))
    assert m.graph is not first and m.graph.edges[ME, "fe80::2%wg1", "wg1"]["cost"] == 100
