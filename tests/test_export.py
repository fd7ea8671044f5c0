"""JSON, NetJSON and DOT renderings of the model."""

from __future__ import annotations

import json

import jsonschema
import pytest

from meshctl.babel.parser import decode_line
from meshctl.topology.export import JSON_SCHEMA_ID, iter_render, render, to_dot, to_graphml, to_json, to_netjson
from meshctl.topology.model import SelfInfo, TopologyModel
from tests.conftest import static_path

ME = "02:6d:63:6c:00:00:00:01"


@pytest.fixture
def model(real_dump: bytes) -> TopologyModel:
    m = TopologyModel(SelfInfo(ME, "client", "babeld-1.12.1"))
    for line in real_dump.splitlines():
        m.apply(decode_line(line))
    return m


@pytest.fixture
def netjson_schema() -> dict:
    with open(static_path("netjson-networkgraph.schema.json")) as f:
        return json.load(f)


def test_json_schema_shape(model: TopologyModel) -> None:
    data = to_json(model)
    assert data["schema"] == JSON_SCHEMA_ID
    assert data["router_id"] == ME
    assert [n["interface"] for n in data["neighbours"]] == ["sd1w1-2", "sd1w1-3"]
    assert all(set(n) >= {"address", "router_id", "rxcost", "txcost", "cost", "rtt_ms", "reach"} for n in data["neighbours"])
    assert len(data["routes"]) == 16
    assert {r["prefix"] for r in data["routes"] if r["installed"]} >= {"10.200.0.0/24", "10.99.0.4/32"}
    assert [x["prefix"] for x in data["exported"]] == ["10.99.0.1/32", "fd99::1/128"]
    json.dumps(data)  # serialisable as is


def test_json_is_deterministic(model: TopologyModel) -> None:
    assert render(model, "json") == render(model, "json")


@pytest.mark.parametrize("batch_routes", [False, True])
def test_streamed_json_is_the_json(model: TopologyModel, batch_routes: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`topology dump` writes the table in pieces; the pieces make exactly the document, empty lists too."""
    import meshctl.topology.export as export

    if batch_routes:  # several batches of routes, as with a big table
        monkeypatch.setattr(export, "_iter_dumps", lambda doc, batch=1, f=export._iter_dumps: f(doc, batch))
    streamed = "".join(iter_render(model, "json"))
    assert json.loads(streamed) == to_json(model)
    assert streamed == render(model, "json")
    empty = "".join(iter_render(TopologyModel(), "json"))
    assert json.loads(empty) == to_json(TopologyModel())


def test_infinite_metric_is_null_in_json(model: TopologyModel, real_monitor: bytes) -> None:
    for line in real_monitor.splitlines():
        model.apply(decode_line(line))
    data = to_json(model)
    dead = [n for n in data["neighbours"] if not n["reachable"]]
    assert dead and dead[0]["cost"] is None


def test_netjson_matches_the_networkgraph_schema(model: TopologyModel, netjson_schema: dict) -> None:
    data = to_netjson(model)
    jsonschema.validate(data, netjson_schema)
    assert data["protocol"] == "babel"
    assert data["version"] == "1.12.1"
    assert data["router_id"] == ME
    ids = {n["id"] for n in data["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in data["links"])
    assert len(data["links"]) == 2


def test_netjson_leaves_out_dead_links(model: TopologyModel, real_monitor: bytes, netjson_schema: dict) -> None:
    for line in real_monitor.splitlines():
        model.apply(decode_line(line))
    data = to_netjson(model)
    jsonschema.validate(data, netjson_schema)
    assert [link["properties"]["interface"] for link in data["links"]] == ["sd1w1-2"]


def test_local_addresses_are_the_nodes_own_addresses_only(model: TopologyModel) -> None:
    """Routed prefixes and client addresses a gateway announces are no node's local address."""
    model.apply(decode_line(b"add xroute 10.98.0.7/32-0.0.0.0/0 prefix 10.98.0.7/32 from 0.0.0.0/0 metric 0"))
    model.apply(decode_line(b"add xroute 10.201.0.0/24-0.0.0.0/0 prefix 10.201.0.0/24 from 0.0.0.0/0 metric 0"))
    data = to_netjson(model, exclude=["10.98.0.7/32"])
    nodes = {n["id"]: n for n in data["nodes"]}
    me = nodes[ME]
    assert me["local_addresses"] == ["10.99.0.1", "fd99::1"]
    assert me["properties"]["prefixes"] == ["10.98.0.7/32", "10.99.0.1/32", "10.201.0.0/24", "fd99::1/128"]
    assert me["properties"]["local"] is True
    upstream = nodes["02:6d:63:6c:00:00:00:04"]  # announces 10.200.0.0/24: babeld cannot say which are its own
    assert upstream["local_addresses"] == [] and "10.200.0.0/24" in upstream["properties"]["prefixes"]
    assert upstream["properties"]["via"] == "02:6d:63:6c:00:00:00:03"
    assert not any(n["properties"].get("local") for n in data["nodes"] if n["id"] != ME)
    everything = [a for n in data["nodes"] for a in n["local_addresses"]]
    assert "10.98.0.7" not in everything and not any("/" in a for a in everything)


def test_netjson_of_an_empty_model_is_valid(netjson_schema: dict) -> None:
    jsonschema.validate(to_netjson(TopologyModel()), netjson_schema)


def test_dot_draws_neighbours_and_hangs_remote_routers_off_their_next_hop(model: TopologyModel) -> None:
    dot = to_dot(model)
    assert dot.startswith('graph "babel client" {') and "layout=neato" in dot  # a mesh layout, not dot's ranks
    links = [line for line in dot.splitlines() if " -- " in line and "dotted" not in line]
    assert len(links) == 2
    assert '"client\\n10.99.0.1\\nfd99::1", fillcolor="white", penwidth=3' in dot
    # The upstream (04) is no neighbour: it hangs off 03, the neighbour the client reaches it through.
    assert '"02:6d:63:6c:00:00:00:03" -- "02:6d:63:6c:00:00:00:04" [style=dotted' in dot
    assert dot.rstrip().endswith("}")


def test_dot_escapes_quotes() -> None:
    m = TopologyModel(SelfInfo(ME, 'evil"host', "babeld-1.12.1"))
    assert 'evil\\"host' in to_dot(m)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(TopologyModel(), "yaml")


@pytest.mark.parametrize("directed", [False, True])
def test_netdiff_parses_our_netjson(model: TopologyModel, directed: bool) -> None:
    """OpenWISP's netdiff (what network-topology uses) loads the NetworkGraph as it is, either way."""
    from netdiff import NetJsonParser, diff

    data = to_netjson(model)
    parsed = NetJsonParser(data=json.dumps(data), directed=directed)
    assert set(parsed.graph.nodes) == {n["id"] for n in data["nodes"]}
    assert parsed.graph.number_of_edges() == len(data["links"]) == 2  # each link once
    for _, _, attrs in parsed.graph.edges(data=True):
        assert attrs["rxcost"] == 96 and attrs["txcost"] == 96 and attrs["cost_text"] == "rxcost 96 txcost 96"
    assert parsed.protocol == "babel" and parsed.metric == "babel"
    # and netdiff can compare two of our dumps (here: identical, so nothing changed).  Only undirected:
    # netdiff 1.3's diff pairs edges as unordered sets, which on a directed graph comes out by chance.
    changes = diff(NetJsonParser(data=json.dumps(data)), NetJsonParser(data=json.dumps(data)))
    assert changes["added"] is None and changes["removed"] is None


def test_graphml_round_trips_through_networkx(model: TopologyModel) -> None:
    import io

    import networkx as nx

    text = to_graphml(model)
    graph = nx.read_graphml(io.StringIO(text), force_multigraph=True)
    data = to_netjson(model)
    assert set(graph.nodes) == {n["id"] for n in data["nodes"]}
    assert graph.number_of_edges() == len(data["links"])
    for _, _, attrs in graph.edges(data=True):
        assert attrs["cost"] > 0 and attrs["interface"]
    assert render(model, "graphml") == text


@pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="Graphviz is not installed (./bootstrap)")
def test_render_svg_and_png(model: TopologyModel) -> None:
    from meshctl.topology.render import render_image

    svg = render_image(model, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert render_image(model, "png").startswith(b"\x89PNG\r\n\x1a\n")
