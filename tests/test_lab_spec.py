"""Topology files: validation messages name the field; plans are sound."""

from __future__ import annotations

import glob
import ipaddress
import os

import pytest

from meshctl.errors import ConfigError
from meshctl.lab.plan import make_plan, node_config
from meshctl.lab.spec import GOSSIP_LIFETIME, load_lab, parse_lab

TOPOLOGIES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "topologies", "*.toml")))


def minimal(**extra: object) -> dict:
    data: dict = {
        "lab": {"name": "t"},
        "node": [{"name": "a"}, {"name": "b"}],
        "link": [{"nodes": ["a", "b"]}],
    }
    data.update(extra)
    return data


@pytest.mark.parametrize("path", TOPOLOGIES, ids=os.path.basename)
def test_shipped_topologies_load_and_plan(path: str) -> None:
    spec = load_lab(path)
    plan = make_plan(spec)
    names = plan.wireguard_interfaces
    assert len(names) == len(set(names))
    tunnels = [t.ifname for n in plan.nodes for t in n.tunnels]
    managed = [m.ifname for n in plan.nodes for m in n.managed]
    assert len(tunnels) + len(managed) == 2 * len(spec.links)
    assert len(managed) == 2 * sum(1 for lk in spec.links if lk.managed)
    managed_ifnames = [i for n in plan.nodes for m in n.managed for i in m.ifnames]  # one per path if per_path
    assert len(names) == len(tunnels) + len(managed_ifnames) + len(spec.uplinks) \
        + len({g for u in spec.uplinks for g in u.gateways})
    assert sum(len(n.veths) for n in plan.nodes) == 2 * sum(lk.paths for lk in spec.links)
    for node in plan.nodes:
        for name in ([t.ifname for t in node.tunnels] + [v.ifname for v in node.veths]
                     + [i for m in node.managed for i in m.ifnames]):
            assert len(name) <= 15, name
        veths = [str(v.address.network) for n in plan.nodes for v in n.veths]
        assert all(veths.count(s) == 2 for s in veths)  # every underlay /30 joins exactly one pair
        ports = [t.listen_port for t in node.tunnels]
        assert len(ports) == len(set(ports))


def test_shipped_topologies_include_the_required_ones() -> None:
    names = {os.path.basename(p) for p in TOPOLOGIES}
    assert {"seed.toml", "triangle.toml", "line5.toml", "grid4x4.toml"} <= names


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"node": []}, "lab", "missing"),
        (minimal(lab={"name": "Bad Name"}), "lab.name", "lowercase"),
        (minimal(lab={"name": "t", "tag": "waytoolong"}), "lab.tag", "1-6"),
        (minimal(lab={"name": "t", "mesh4": "fd00::/64"}), "lab.mesh4", "IPv4"),
        (minimal(lab={"name": "t", "colour": "red"}), "lab.colour", "unknown key"),
        (minimal(lab={"name": "t", "gossip_lifetime": 1}), "lab.gossip_lifetime", "3..3600"),
        (minimal(node=[{"name": "a"}, {"name": "a"}]), "node[1].name", "duplicate"),
        (minimal(node=[{"name": "a", "roles": ["boss"]}, {"name": "b"}]), "node[0].roles[0]", "unknown role"),
        (minimal(node=[{"name": "a", "announce": ["10.0.0.300/24"]}, {"name": "b"}]), "node[0].announce[0]", "not an address"),
        (minimal(node=[{"name": "a", "announce": [5]}, {"name": "b"}]), "node[0].announce[0]", "must be str"),
        (minimal(link=[{"nodes": ["a", "c"]}]), "link[0].nodes", "unknown node 'c'"),
        (minimal(link=[{"nodes": ["a", "a"]}]), "link[0].nodes", "two different"),
        (minimal(link=[{"nodes": ["a", "b"]}, {"nodes": ["b", "a"]}]), "link[1].nodes", "duplicate link"),
        (minimal(link=[{"nodes": ["a", "b"], "rxcost": "cheap"}]), "link[0].rxcost", "must be int"),
        (minimal(babel={"hello_interval": 0}), "babel.hello_interval", "between"),
        (minimal(babel={"hello_interval": True}), "babel.hello_interval", "must be float"),
        (minimal(babel={"type": "satellite"}), "babel.type", "tunnel, wired or wireless"),
    ],
)
def test_bad_topologies_name_the_field(data: dict, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_lab(data, "x.toml")
    fields = {p.field for p in info.value.problems}
    assert field in fields, (fields, str(info.value))
    assert message in str(info.value)
    assert "x.toml" in str(info.value)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse_lab(minimal(lab={"name": "t", "x": 1}, link=[{"nodes": ["a", "z"]}]), "x.toml")
    assert len(info.value.problems) == 2
    assert "2 problems" in str(info.value)


def test_toml_syntax_error_names_the_line(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "broken.toml"
    path.write_text('[lab]\nname = "t"\n[[node]\nname = "a"\n')
    with pytest.raises(ConfigError) as info:
        load_lab(str(path))
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_lab("/nonexistent/topology.toml")


def test_babeld_conf_never_redistributes_the_underlay() -> None:
    spec = load_lab(os.path.join(os.path.dirname(__file__), "..", "topologies", "seed.toml"))
    plan = make_plan(spec, tag="zz")
    upstream = plan.node("upstream")
    conf = upstream.babeld_conf.splitlines()
    assert conf.index("redistribute local deny") > max(i for i, line in enumerate(conf) if "allow" in line)
    assert conf[-1] == "redistribute deny"
    assert "redistribute ip 10.200.0.0/24 eq 24 allow" in conf
    for v in upstream.veths:
        assert str(v.address.ip) not in upstream.babeld_conf
    assert f"router-id {upstream.router_id}" in conf
    assert any(line.startswith("local-path-readwrite /run/meshctl/lab/zz/upstream/") for line in conf)


def test_plan_wires_tunnel_ends_to_each_other() -> None:
    spec = parse_lab(minimal(), "x.toml")
    plan = make_plan(spec, tag="q")
    a, b = plan.node("a"), plan.node("b")
    (ta,), (tb,) = a.tunnels, b.tunnels
    assert ta.peer_ifname == tb.ifname and tb.peer_ifname == ta.ifname
    assert ta.endpoint == f"{b.veths[0].address.ip}:{tb.listen_port}"
    assert ta.peer_ll == tb.local_ll.ip
    assert a.veths[0].address.network == b.veths[0].address.network
    assert a.mesh4.ip == ipaddress.ip_address("10.99.0.1")
    assert plan.namespaces == ("q-a", "q-b")


def test_problems_name_their_line_and_a_small_underlay_is_refused(tmp_path) -> None:  # noqa: ANN001
    import pytest

    from meshctl.errors import ConfigError
    from meshctl.lab.spec import load_lab

    path = tmp_path / "bad.toml"
    path.write_text('[lab]\nname = "x"\nunderlay = "10.250.0.0/30"\n\n[[node]]\nname = "a"\n[[node]]\nname = "b"\n'
                    '[[node]]\nname = "c"\n\n[[link]]\nnodes = ["a", "b"]\n[[link]]\nnodes = ["b", "zz"]\n\n'
                    '[[uplink]]\nclient = "a"\ngateways = ["b", "b"]\nsteer = ["10.200.0.0/24"]\nhold = -1.0\n'
                    'probe_interval = 0.0\n')
    with pytest.raises(ConfigError) as info:
        load_lab(str(path))
    text = str(info.value)
    assert f"{path}:15: link[1].nodes: unknown node 'zz'" in text
    assert f"{path}:3: lab.underlay:" in text and "room for 1 links" in text
    for field in ("uplink[0].gateways[1]", "uplink[0].hold", "uplink[0].probe_interval"):
        assert field in text, (field, text)


def test_the_daemons_gossip_lifetime_is_the_labs() -> None:
    spec = parse_lab(minimal(lab={"name": "t", "daemons": True, "gossip_lifetime": 60}), "x.toml")
    plan = make_plan(spec, tag="q")
    config = node_config(plan.node("a"), plan, {}, "/nonexistent", {"a": "key-a", "b": "key-b"})
    assert "lifetime = 60\n" in config
    assert make_plan(parse_lab(minimal(), "x.toml"), tag="q").gossip_lifetime == GOSSIP_LIFETIME
