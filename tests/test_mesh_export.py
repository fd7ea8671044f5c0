"""The whole mesh (from gossip) as NetJSON, DOT and GraphML: what OpenWISP, netjsongraph.js and a map take."""

from __future__ import annotations

import io
import json

import jsonschema
import networkx as nx
import pytest
from nacl.signing import SigningKey as Ed25519PrivateKey
from netdiff import NetJsonParser, diff

from meshctl.gossip.table import Description, GossipError, Link, NodeInfo, UplinkChoice, mesh_graph, sign, verify
from meshctl.topology.export import mesh_json, mesh_to_netjson, render_mesh
from tests.conftest import static_path

C, G1, G2, UP = (f"02:00:00:00:00:00:00:0{i}" for i in (1, 2, 3, 4))
CLIENT_ADDRESS = "10.98.0.1"


def seed(chosen: str = "gw1") -> list[NodeInfo]:
    """The seed mesh as its four daemons describe themselves; gw1 announces the client's address."""
    uplinks = (
        UplinkChoice("gw1", G1, "warm", chosen == "gw1", CLIENT_ADDRESS),
        UplinkChoice("gw2", G2, "warm", chosen == "gw2", CLIENT_ADDRESS),
    )
    announces = {"gw1": ("10.98.0.1/32",) if chosen == "gw1" else (), "gw2": ("10.98.0.1/32",) if chosen == "gw2" else ()}
    return [
        NodeInfo("client", C, (Link(G1, 96, "c-1"), Link(G2, 160, "c-2")), ("10.99.0.1/32", "fd99::1/128"),
                 roles=("client",), uplinks=uplinks),
        NodeInfo("gw1", G1, (Link(C, 96, "1-c"), Link(UP, 96, "1-u")), ("10.99.0.2/32", *announces["gw1"]),
                 roles=("gateway",)),
        NodeInfo("gw2", G2, (Link(C, 96, "2-c"), Link(UP, 96, "2-u")), ("10.99.0.3/32", *announces["gw2"]),
                 roles=("gateway",)),
        NodeInfo("upstream", UP, (Link(G1, 96, "u-1"), Link(G2, 160, "u-2")),
                 ("10.99.0.4/32", "10.200.0.0/24", "10.200.0.1/32"), roles=("upstream",)),
    ]


def view(answering: str = C, nodes: list[NodeInfo] | None = None) -> dict:
    return mesh_to_netjson(mesh_json(mesh_graph(nodes or seed()), answering, "x", "babeld-1.12.1"))


@pytest.fixture
def schema() -> dict:
    with open(static_path("netjson-networkgraph.schema.json")) as f:
        return json.load(f)


def test_mesh_netjson_validates_and_names_babelds_version(schema: dict) -> None:
    data = view()
    jsonschema.validate(data, schema)
    assert data["version"] == "1.12.1" and data["protocol"] == "babel"


def test_each_link_once_with_both_directions_costs() -> None:
    links = {(lk["source"], lk["target"]): lk for lk in view()["links"]}
    assert set(links) == {(C, G1), (C, G2), (G1, UP), (G2, UP)}
    lk = links[(C, G2)]
    assert lk["cost"] == 160 and lk["properties"]["reverse_cost"] == 96
    assert lk["cost_text"] == "160 client->gw2, 96 gw2->client"
    assert lk["properties"]["source_interface"] == "c-2" and lk["properties"]["target_interface"] == "2-c"


def test_a_link_only_one_end_reports_shows_with_that_cost() -> None:
    nodes = [NodeInfo("a", G2, (Link(C, 128, "a-b"),))]  # C runs no meshctl
    (lk,) = view(G2, nodes)["links"]
    assert (lk["source"], lk["target"], lk["cost"]) == (G2, C, 128)
    assert lk["properties"]["reverse_cost"] is None and lk["cost_text"] == "128 a->" + C


@pytest.mark.parametrize("directed", [False, True])
def test_netdiff_keeps_every_link_and_both_costs(directed: bool) -> None:
    data = view()
    parsed = NetJsonParser(data=json.dumps(data), directed=directed)
    assert parsed.graph.number_of_nodes() == 4 and parsed.graph.number_of_edges() == 4
    assert parsed.graph.edges[C, G2]["weight"] == 160 and parsed.graph.edges[C, G2]["reverse_cost"] == 96
    assert parsed.version == "1.12.1"


def test_local_addresses_hold_no_routed_prefix_and_no_client_address() -> None:
    for chosen in ("gw1", "gw2"):
        nodes = {n["label"]: n for n in view(nodes=seed(chosen))["nodes"]}
        assert nodes["upstream"]["local_addresses"] == ["10.99.0.4", "10.200.0.1"]
        assert "10.200.0.0/24" in nodes["upstream"]["properties"]["prefixes"]
        assert nodes[chosen]["local_addresses"] == [f"10.99.0.{2 if chosen == 'gw1' else 3}"]
        assert "10.98.0.1/32" in nodes[chosen]["properties"]["prefixes"]  # still shown as what it announces
        everything = [a for n in nodes.values() for a in n["local_addresses"]]
        assert CLIENT_ADDRESS not in everything


def test_the_view_is_the_same_whichever_daemon_answered() -> None:
    """Apart from naming the answering node, nothing depends on it: netdiff sees no change."""
    a, b = view(C), view(UP)
    assert a["nodes"] == b["nodes"] and a["links"] == b["links"]
    assert not any("local" in n["properties"] for n in a["nodes"])
    changes = diff(NetJsonParser(data=json.dumps(a)), NetJsonParser(data=json.dumps(b)))
    assert changes["added"] is None and changes["removed"] is None and changes["changed"] is None


def test_uplink_plane_shows_the_chosen_gateway_and_follows_a_switch() -> None:
    for chosen, other in (("gw1", "gw2"), ("gw2", "gw1")):
        nodes = {n["label"]: n for n in view(nodes=seed(chosen))["nodes"]}
        ups = {u["gateway"]: u for u in nodes["client"]["properties"]["uplinks"]}
        assert ups[chosen]["chosen"] and not ups[other]["chosen"] and ups[other]["state"] == "warm"
        assert nodes[chosen]["properties"]["serving"] == ["client"] and "serving" not in nodes[other]["properties"]


def test_mesh_dot_uses_a_mesh_layout_one_edge_per_link_and_the_uplink_plane() -> None:
    dot = render_mesh(mesh_json(mesh_graph(seed()), C, "client", "babeld-1.12.1"), "dot")
    assert dot.startswith('graph "babel client"') and "layout=neato" in dot
    babel = [line for line in dot.splitlines() if " -- " in line and "dashed" not in line]
    uplink = [line for line in dot.splitlines() if "dashed" in line]
    assert len(babel) == 4 and any('label="160 / 96"' in line for line in babel)
    assert len(uplink) == 2 and sum("label=chosen" in line for line in uplink) == 1
    assert f'"{C}" -- "{G1}" [style=dashed' in next(line for line in uplink if "label=chosen" in line)
    assert 'fillcolor="#9ecae1"' in dot  # gateways coloured by role


def test_mesh_graphml_loads_in_networkx() -> None:
    text = render_mesh(mesh_json(mesh_graph(seed()), C, "client", "babeld-1.12.1"), "graphml")
    graph = nx.read_graphml(io.StringIO(text), force_multigraph=True)
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 4
    assert json.loads(graph.nodes[C]["uplinks"])[0]["gateway"] == "gw1"


def test_uplinks_cross_gossip_and_old_descriptions_still_verify() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {"client": key.verify_key}
    node = seed()[0]
    got = verify(sign(Description("client", 1, 100.0, 60.0, node), key), trusted, 100.0)
    assert got.node == node and got.node.uplinks[0] == UplinkChoice("gw1", G1, "warm", True, CLIENT_ADDRESS)
    bare = NodeInfo("client", C)  # a node without uplinks sends no "u" key, as nodes before it did
    assert verify(sign(Description("client", 2, 100.0, 60.0, bare), key), trusted, 100.0).node == bare


@pytest.mark.parametrize("bad", [
    UplinkChoice("gw1", G1, "x" * 33, True),  # a state is one short word
    UplinkChoice("gw1", G1, "", True),
])
def test_malformed_uplinks_are_refused(bad: UplinkChoice) -> None:
    key = Ed25519PrivateKey.generate()
    data = sign(Description("client", 1, 100.0, 60.0, NodeInfo("client", C, uplinks=(bad,))), key)
    with pytest.raises(GossipError, match="uplink"):
        verify(data, {"client": key.verify_key}, 100.0)
