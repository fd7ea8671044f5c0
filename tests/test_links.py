"""Link automation without namespaces: endpoint choice, per-path plans, the [links] config, the runner on fakes."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshctl.babel.parser import parse_line
from meshctl.config import LinksConfig, NeighbourConfig, PathConfig, parse_config
from meshctl.errors import ConfigError
from meshctl.links import runner as runner_mod
from meshctl.links.netdev import link_local_for
from meshctl.links.plan import (
    MAX_PATHS,
    EndpointState,
    desired_paths,
    endpoint_at,
    gossip_interface,
    interface_name,
    observe,
    path_interface,
    roamed,
    routed_through_mesh,
    single_endpoints,
    with_endpoints,
)
from meshctl.topology.model import MeshView
from meshctl.wireguard.backend import MemoryBackend
from meshctl.wireguard.keys import KeyPair, write_private_key
from meshctl.wireguard.state import Device

EPS = ("10.250.0.2:52001", "10.250.0.6:52001")
KEYS = KeyPair.generate()
PEER = KeyPair.generate().public


# -- one tunnel: when to move -------------------------------------------------


def test_a_tunnel_that_hears_its_neighbour_stays() -> None:
    s = EndpointState(EPS)
    s, move = observe(s, 100, 0.0, 3.0)
    for t in range(1, 10):
        s, move = observe(s, 100 + t * 32, float(t), 3.0)
        assert move is None
    assert s.endpoint == EPS[0]


def test_silence_moves_to_the_next_endpoint_and_waits_before_judging_it() -> None:
    s, _ = observe(EndpointState(EPS), 100, 0.0, 3.0)
    s, move = observe(s, 100, 2.9, 3.0)
    assert move is None
    s, move = observe(s, 100, 3.0, 3.0)
    assert move == EPS[1] and s.endpoint == EPS[1]
    s, move = observe(s, 100, 5.0, 3.0)  # the new endpoint gets its own dead_after
    assert move is None
    s, move = observe(s, 164, 5.5, 3.0)  # it answers
    s, move = observe(s, 164, 8.0, 3.0)
    assert move is None and s.endpoint == EPS[1]


def test_round_robin_and_a_single_endpoint_never_moves() -> None:
    s, _ = observe(EndpointState(EPS), 0, 0.0, 1.0)
    s, a = observe(s, 0, 1.0, 1.0)
    s, b = observe(s, 0, 2.0, 1.0)
    assert (a, b) == (EPS[1], EPS[0])
    one, _ = observe(EndpointState(EPS[:1]), 0, 0.0, 1.0)
    assert observe(one, 0, 100.0, 1.0)[1] is None
    assert observe(one, 0, 100.0, 1.0, babel=False)[1] is None


def test_a_recreated_device_is_not_silence() -> None:
    s, _ = observe(EndpointState(EPS), 5000, 0.0, 3.0)
    s, move = observe(s, 10, 10.0, 3.0)
    assert move is None and s.heard == 10.0


@pytest.mark.parametrize(
    ("readings", "moves"),
    [
        # (rx_bytes, now, babel) ...: babeld saw the neighbour, then lost it: move at once, long before dead_after
        ([(100, 0.0, True), (150, 0.5, True), (150, 0.8, False)], [None, None, EPS[1]]),
        # babeld never saw it alive here (a tunnel still coming up): only silence counts
        ([(100, 0.0, False), (100, 0.5, False), (100, 3.0, False)], [None, None, EPS[1]]),
        # babeld has no say (not attached, not synced): only silence counts
        ([(100, 0.0, True), (100, 0.5, None), (100, 2.9, None)], [None, None, None]),
        # after a move, the new endpoint must be seen alive before babeld's word can move it again
        ([(100, 0.0, True), (100, 0.3, False), (100, 0.4, False), (120, 0.6, True), (120, 0.9, False)],
         [None, EPS[1], None, None, EPS[0]]),
    ],
)
def test_babeld_losing_the_neighbour_moves_the_tunnel_at_once(readings: list, moves: list) -> None:
    s = EndpointState(EPS)
    got = []
    for rx, now, babel in readings:
        s, move = observe(s, rx, now, 3.0, babel)
        got.append(move)
    assert got == moves


def test_a_late_verdict_on_a_path_the_neighbour_already_left_moves_nothing() -> None:
    """Hellos every 4 s: babeld calls the old path dead after the neighbour has moved us to another by roaming."""
    s, _ = observe(roamed(EndpointState(EPS), EPS[0]), 100, 0.0, 4.0, True)
    s = roamed(s, EPS[1])  # the neighbour moved first; WireGuard followed its packets
    s, move = observe(s, 180, 5.0, 4.0, False)  # babeld's verdict on the old path, late
    assert move is None and s.endpoint == EPS[1]
    s, _ = observe(s, 260, 9.0, 4.0, True)  # babeld sees it alive on the new path: its word counts again
    s, move = observe(s, 260, 9.5, 4.0, False)
    assert move == EPS[0]


def test_roaming_and_a_changed_list_keep_the_current_endpoint() -> None:
    s = EndpointState(EPS)
    assert roamed(s, EPS[1]).endpoint == EPS[1]
    assert roamed(s, "192.0.2.9:1").endpoint == EPS[0] and roamed(s, None) == s
    s = roamed(s, EPS[1])
    grown = with_endpoints(s, (*EPS, "192.0.2.9:52001"))
    assert grown.endpoint == EPS[1]
    assert with_endpoints(s, ("192.0.2.9:52001",)).endpoint == "192.0.2.9:52001"
    assert with_endpoints(s, ()).endpoint is None


# -- names and addresses ------------------------------------------------------


def test_link_local_addresses_are_stable_and_per_tunnel() -> None:
    a = ipaddress.IPv6Address(link_local_for("a", "b"))
    assert a.is_link_local and str(a) == link_local_for("a", "b")
    assert link_local_for("a", "b") != link_local_for("b", "a")
    assert len({link_local_for("a", "b", path_interface("mc-b", k)) for k in range(MAX_PATHS)}) == MAX_PATHS


def test_interface_names() -> None:
    assert interface_name("gw1") == "mc-gw1"
    assert interface_name("a-very-long-neighbour-name") == "mc-a-very-long-"
    assert interface_name("odd name/x") == "mc-odd_name_x"
    assert path_interface("mc-b", 2) == "mc-b-2" and gossip_interface("mc-b", 2) == "mc-b-g2"


@given(st.text(min_size=1, max_size=40), st.integers(0, MAX_PATHS - 1))
def test_every_derived_interface_name_is_a_valid_linux_name(name: str, k: int) -> None:
    base = interface_name(name)
    for ifname in (base, path_interface(base, k), gossip_interface(base, k)):
        assert 0 < len(ifname) <= 15 and re.fullmatch(r"[A-Za-z0-9_\-]+", ifname), ifname


def test_advertised_endpoints_take_our_port_and_the_mesh_is_no_underlay() -> None:
    assert endpoint_at("192.0.2.7:51820", 52003) == "192.0.2.7:52003"
    assert endpoint_at("[2001:db8::7]:51820", 52003) == "[2001:db8::7]:52003"
    assert endpoint_at("not an address", 1) is None
    mesh = [ipaddress.ip_network("10.99.0.0/24"), ipaddress.ip_network("0.0.0.0/0")]
    assert routed_through_mesh("10.99.0.7:1", mesh)
    assert not routed_through_mesh("192.0.2.7:1", mesh)  # only the default route covers it: not the mesh's own
    assert not routed_through_mesh("[fd99::7]:1", mesh)


# -- one tunnel per path: which tunnels -----------------------------------------


def links(*neighbours: NeighbourConfig, babel: str = "type tunnel") -> LinksConfig:
    return LinksConfig(KEYS, 5, 15.0, babel, neighbours)


def gossip_neighbour(paths: tuple[PathConfig, ...] = ()) -> NeighbourConfig:
    return NeighbourConfig("b", PEER, (), "mc-b", 52100, paths, "paths", 52200)


def test_configured_paths_carry_their_own_cost_and_options() -> None:
    n = NeighbourConfig("b", PEER, (), "mc-b", 0, (
        PathConfig("mc-b-0", 52001, "192.0.2.7:52011"),
        PathConfig("mc-b-1", 52002, "198.51.100.7:52012", rxcost=512, fwmark=7),
        PathConfig("radio", 52003, None, babel="type wireless"),
    ))
    plans, refused = desired_paths(n, links(n))
    assert refused == ()
    assert [(p.interface, p.listen_port, p.endpoint, p.babel, p.fwmark) for p in plans] == [
        ("mc-b-0", 52001, "192.0.2.7:52011", "type tunnel", 0),
        ("mc-b-1", 52002, "198.51.100.7:52012", "type tunnel rxcost 512", 7),
        ("radio", 52003, None, "type wireless", 0),
    ]


@pytest.mark.parametrize(
    ("theirs", "own", "expected"),
    [
        # They advertise two addresses, we none (behind NAT): we call both.
        (("192.0.2.7:1", "[2001:db8::7]:1"), 0, [("mc-b-g0", 52100, "192.0.2.7:52200"),
                                                 ("mc-b-g1", 52101, "[2001:db8::7]:52201")]),
        # They advertise one, we three: path 0 both ways; paths 1 and 2 wait for them to call us.
        (("192.0.2.7:1",), 3, [("mc-b-g0", 52100, "192.0.2.7:52200"), ("mc-b-g1", 52101, None),
                               ("mc-b-g2", 52102, None)]),
        ((), 0, []),
        (("192.0.2.1:1",) * (MAX_PATHS + 3), 0, [(f"mc-b-g{k}", 52100 + k, f"192.0.2.1:{52200 + k}")
                                                 for k in range(MAX_PATHS)]),
    ],
)
def test_gossip_paths_pair_the_kth_address_of_each_end(theirs: tuple, own: int, expected: list) -> None:
    n = gossip_neighbour()
    plans, _ = desired_paths(n, links(n), theirs, own)
    assert [(p.interface, p.listen_port, p.endpoint) for p in plans] == expected
    assert all(p.learnt for p in plans)


def test_both_ends_agree_on_gossip_paths() -> None:
    """a's path k listens where b's path k sends, and the other way round."""
    a_ads, b_ads = ("192.0.2.1:1",), ("198.51.100.1:1", "203.0.113.1:1")
    at_a = NeighbourConfig("b", PEER, (), "mc-b", 52100, (), "paths", 52200)
    at_b = NeighbourConfig("a", PEER, (), "mc-a", 52200, (), "paths", 52100)
    plans_a, _ = desired_paths(at_a, links(at_a), b_ads, len(a_ads))
    plans_b, _ = desired_paths(at_b, links(at_b), a_ads, len(b_ads))
    assert len(plans_a) == len(plans_b) == 2
    for pa, pb in zip(plans_a, plans_b, strict=True):
        assert pa.endpoint is None or pa.endpoint.endswith(f":{pb.listen_port}")
        assert pb.endpoint is None or pb.endpoint.endswith(f":{pa.listen_port}")
    assert plans_b[1].endpoint is None  # a has no second address: b waits for a to call


def test_an_endpoint_routed_through_the_mesh_gets_no_tunnel() -> None:
    n = gossip_neighbour((PathConfig("mc-b-0", 52001, "10.99.0.2:52011"),))
    mesh = [ipaddress.ip_network("10.99.0.2/32")]
    plans, refused = desired_paths(n, links(n), ("10.99.0.2:1", "192.0.2.7:1"), 0, mesh)
    assert [p.interface for p in plans] == ["mc-b-g1"]
    assert [r.endpoint for r in refused] == ["10.99.0.2:52011", "10.99.0.2:52200"]
    one = NeighbourConfig("b", PEER, ("10.99.0.2:1", "192.0.2.7:1"), "mc-b", 52100, (), "endpoints", 52200)
    assert single_endpoints(one, ("203.0.113.1:9", "192.0.2.7:9"), mesh) == ("192.0.2.7:1", "203.0.113.1:52200",
                                                                               "192.0.2.7:52200")


# -- the [links] config ---------------------------------------------------------


def config(tmp_path: Path, neighbour: str) -> dict[str, Any]:
    key = tmp_path / "links.key"
    if not key.exists():
        write_private_key(str(key), KEYS)
    import tomllib

    return tomllib.loads(f'[node]\nname = "a"\n[links]\nprivate_key_file = "{key}"\n'
                        f'[[links.neighbour]]\nname = "b"\npublic_key = "{PEER}"\n{neighbour}')


PATHS = ('[[links.neighbour.path]]\nendpoint = "192.0.2.7:52011"\nlisten_port = 52001\n'
         '[[links.neighbour.path]]\nendpoint = "[2001:db8::7]:52012"\nlisten_port = 52002\nrxcost = 400\nfwmark = 2\n'
         '[[links.neighbour.path]]\nlisten_port = 52003\ninterface = "radio-b"\nbabel = "type wireless"\n')


def test_paths_are_read_with_their_defaults(tmp_path: Path) -> None:
    n = parse_config(config(tmp_path, PATHS)).links.neighbours[0]  # type: ignore[union-attr]
    assert n.per_path and n.endpoints == () and n.listen_port == 0
    assert n.paths == (
        PathConfig("mc-b-0", 52001, "192.0.2.7:52011"),
        PathConfig("mc-b-1", 52002, "[2001:db8::7]:52012", rxcost=400, fwmark=2),
        PathConfig("radio-b", 52003, None, babel="type wireless"),
    )
    assert n.interfaces == ("mc-b-0", "mc-b-1", "radio-b")


def test_gossip_paths_beside_configured_ones_reserve_their_names_and_ports(tmp_path: Path) -> None:
    n = parse_config(config(tmp_path, 'from_gossip = "paths"\nport = 52200\nlisten_port = 52100\n'
                                      + PATHS)).links.neighbours[0]  # type: ignore[union-attr]
    assert n.listen_ports == (52001, 52002, 52003, *range(52100, 52100 + MAX_PATHS))
    assert n.interfaces[3:] == tuple(gossip_interface("mc-b", k) for k in range(MAX_PATHS))


@pytest.mark.parametrize(
    ("neighbour", "field", "message"),
    [
        ('endpoints = ["192.0.2.7:1"]\n' + PATHS, "links.neighbour[0].endpoints", "each [[links.neighbour.path]]"),
        ('listen_port = 5\n' + PATHS, "links.neighbour[0].listen_port", "each [[links.neighbour.path]]"),
        (PATHS.replace("rxcost = 400", "rxcost = 70000"), "links.neighbour[0].path[1].rxcost", "1..65534"),
        (PATHS.replace("listen_port = 52002", "listen_port = 52001"), "links.neighbour", "share a listen_port"),
        (PATHS.replace('"radio-b"', '"mc-b-0"'), "links.neighbour", "share an interface"),
        (PATHS.replace('"radio-b"', '"a-name-far-too-long"'), "links.neighbour[0].path[2].interface", "15 characters"),
        (PATHS.replace("listen_port = 52003\n", ""), "links.neighbour[0].path[2].listen_port", "missing"),
        (PATHS + "color = 1\n", "links.neighbour[0].path[2].color", "unknown key"),
        ('from_gossip = "paths"\nlisten_port = 52001\n' + PATHS, "links.neighbour", "share a listen_port"),
        ('from_gossip = "paths"\nlisten_port = 52100\n', "links.neighbour[0].port", "missing"),
        ('from_gossip = "endpoints"\nlisten_port = 5\nport = 6\n' + PATHS, "links.neighbour[0].from_gossip", "one tunnel"),
        ('from_gossip = "always"\nlisten_port = 5\nport = 6\n', "links.neighbour[0].from_gossip", '"endpoints"'),
        ('endpoints = ["192.0.2.7:1"]\nlisten_port = 5\nport = 6\n', "links.neighbour[0].port", "only with from_gossip"),
        ("".join(f"[[links.neighbour.path]]\nlisten_port = {53000 + k}\n" for k in range(MAX_PATHS + 1)),
         "links.neighbour[0].path", f"at most {MAX_PATHS}"),
    ],
)
def test_path_problems_name_their_field(tmp_path: Path, neighbour: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(tmp_path, neighbour))
    lines = str(info.value).splitlines()
    assert any(f"{field}: " in line and message in line for line in lines), lines


def test_one_tunnel_neighbours_read_as_before(tmp_path: Path) -> None:
    n = parse_config(config(tmp_path, 'endpoints = ["192.0.2.7:52011"]\nlisten_port = 52001\n'
                                      'from_gossip = "endpoints"\nport = 52011\nbabel = "type wired"\n')
                     ).links.neighbours[0]  # type: ignore[union-attr]
    assert not n.per_path and n.interfaces == ("mc-b",) and n.listen_ports == (52001,)
    assert (n.from_gossip, n.port, n.babel) == ("endpoints", 52011, "type wired")


@pytest.mark.parametrize("topology", ["twopath", "threepath", "pathline", "gossippath"])
def test_the_lab_writes_link_configs_the_daemon_reads(tmp_path: Path, topology: str) -> None:
    import os
    import tomllib

    from meshctl.lab.plan import make_plan, node_config
    from meshctl.lab.spec import load_lab

    plan = make_plan(load_lab(os.path.join(os.path.dirname(__file__), "..", "topologies", f"{topology}.toml")), "tq",
                     run_root=str(tmp_path))
    from meshctl.gossip.signing import SigningKey, write_signing_key

    keys = {n.name: KeyPair.generate().public for n in plan.nodes}
    signing = SigningKey.generate()
    for node in (n for n in plan.nodes if n.managed):
        os.makedirs(node.run_dir)
        write_private_key(os.path.join(node.run_dir, "links.key"), KEYS)
        write_signing_key(os.path.join(node.run_dir, "gossip.key"), signing)
        text = node_config(node, plan, {}, "", {n.name: signing.public for n in plan.nodes}, keys)
        config = parse_config(tomllib.loads(text), node.name)
        assert config.links is not None
        for m, n in zip(node.managed, config.links.neighbours, strict=True):
            assert n.interfaces[:len(m.ifnames)] == m.ifnames  # (a gossip neighbour reserves MAX_PATHS names)
            assert n.per_path == m.per_path
            assert (n.from_gossip == "paths") == bool(m.gossip_ifnames)
        if any(m.advertise for m in node.managed):
            assert config.gossip is not None and config.gossip.endpoints == node.managed[0].advertise


# -- the runner, on a memory backend and fake devices ---------------------------


class FakeDevices:
    """Stands in for netdev and wireguard-go: devices appear in the memory backend when created."""

    def __init__(self, backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = backend
        monkeypatch.setattr(runner_mod, "exists", lambda ifname: ifname in backend.devices)
        monkeypatch.setattr(runner_mod, "link_up", self._noop)
        monkeypatch.setattr(runner_mod, "ensure_link_local", self._false)

        async def create(tunnel: runner_mod.Tunnel) -> None:
            backend.devices[tunnel.ifname] = Device(tunnel.ifname)

        async def retire(tunnel: runner_mod.Tunnel) -> None:
            if tunnel.attached:
                await tunnel.babel_command(f"flush interface {tunnel.ifname}")
            backend.devices.pop(tunnel.ifname, None)

        monkeypatch.setattr(runner_mod.Tunnel, "_create", create)
        monkeypatch.setattr(runner_mod.Tunnel, "retire", retire)

    @staticmethod
    async def _noop(*args: object) -> None:
        return None

    @staticmethod
    async def _false(*args: object) -> bool:
        return False


def view_with(lines: list[str]) -> MeshView:
    view = MeshView()
    view.synced = True
    for line in lines:
        view.model.apply(parse_line(line))
    return view


def test_the_runner_follows_advertised_paths_as_they_appear_and_vanish(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = MemoryBackend()
    FakeDevices(backend, monkeypatch)
    sent: list[str] = []
    ads: dict[str, tuple[str, ...] | None] = {"b": None}

    async def babel(command: str) -> None:
        sent.append(command)

    n = gossip_neighbour((PathConfig("mc-b-0", 52001, "192.0.2.7:52011", rxcost=96),))
    view = view_with([])

    async def go() -> list[list[str]]:
        r = runner_mod.LinkRunner("a", links(n), n, view, babel, backend, advertised=lambda name: ads[name])
        seen = []
        for now in (None, ("192.0.2.9:1", "198.51.100.9:1"), ("198.51.100.9:1",), None):
            ads["b"] = now
            await r._step()
            seen.append(sorted(r.tunnels))
        await r._retire_all()
        return seen

    seen = asyncio.run(go())
    assert seen == [["mc-b-0"], ["mc-b-0", "mc-b-g0", "mc-b-g1"], ["mc-b-0", "mc-b-g0"],
                    ["mc-b-0", "mc-b-g0"]]  # a description that lapsed keeps what it said last
    assert "interface mc-b-0 type tunnel rxcost 96" in sent
    assert sent.index("flush interface mc-b-g1") < len(sent)
    assert backend.devices == {}
    g0 = [w for ifname, w in backend.writes if ifname == "mc-b-g0"]
    assert g0[0].listen_port == 52100 and g0[0].peers[0].endpoint == "192.0.2.9:52200"
    # The address behind path 0 changed (198.51.100.9 is now first): the endpoint is rewritten, the device kept.
    assert g0[-1].peers[0].endpoint == "198.51.100.9:52200" and g0[-1].listen_port is None


def test_status_shows_each_path_and_the_one_carrying_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = MemoryBackend()
    FakeDevices(backend, monkeypatch)
    n = NeighbourConfig("b", PEER, (), "mc-b", 0, (PathConfig("mc-b-0", 52001, "192.0.2.7:1", rxcost=96),
                                                   PathConfig("mc-b-1", 52002, "192.0.2.8:1", rxcost=512)))
    view = view_with([
        "add interface mc-b-0 up true ipv6 fe80::1",
        "add interface mc-b-1 up true ipv6 fe80::2",
        "add neighbour 1 address fe80::10 if mc-b-0 reach 0000 ureach 0000 rxcost 65535 txcost 65535 cost 65535",
        "add neighbour 2 address fe80::20 if mc-b-1 reach ffff ureach 0000 rxcost 512 txcost 512 rtt 1.5 rttcost 0 cost 512",
        "add route 3 prefix 10.99.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 metric 512 "
        "refmetric 0 via fe80::20 if mc-b-1",
    ])

    async def babel(command: str) -> None:
        return None

    async def go() -> dict[str, Any]:
        r = runner_mod.LinkRunner("a", links(n), n, view, babel, backend)
        await r._step()
        backend.handshake("mc-b-1", PEER)
        await r._step()
        return r.status()

    status = asyncio.run(go())
    assert status["mode"] == "per-path" and status["carrying"] == "mc-b-1" and status["endpoint"] == "192.0.2.8:1"
    p0, p1 = status["paths"]
    assert (p0["state"], p0["cost"], p0["carrying"], p0["rxcost"]) == ("handshaking", 65535, False, 96)
    assert (p1["state"], p1["cost"], p1["carrying"], p1["rtt_ms"], p1["routes"]) == ("up", 512, True, 1.5, 1)
    assert p1["handshake_age_s"] is not None


def test_a_new_cost_reattaches_the_interface_and_a_new_port_makes_the_tunnel_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = MemoryBackend()
    FakeDevices(backend, monkeypatch)
    sent: list[str] = []

    async def babel(command: str) -> None:
        sent.append(command)

    first = NeighbourConfig("b", PEER, (), "mc-b", 0, (PathConfig("mc-b-0", 52001, "192.0.2.7:1", rxcost=96),
                                                       PathConfig("mc-b-1", 52002, "192.0.2.8:1", rxcost=96)))
    dearer = NeighbourConfig("b", PEER, (), "mc-b", 0, (PathConfig("mc-b-0", 52001, "192.0.2.7:1", rxcost=96),
                                                        PathConfig("mc-b-1", 52002, "192.0.2.8:1", rxcost=400)))
    moved = NeighbourConfig("b", PEER, (), "mc-b", 0, (PathConfig("mc-b-0", 52001, "192.0.2.7:1", rxcost=96),
                                                       PathConfig("mc-b-1", 52009, "192.0.2.8:1", rxcost=400)))

    async def go() -> list[object]:
        view = view_with(["add interface mc-b-0 up true ipv6 fe80::1", "add interface mc-b-1 up true ipv6 fe80::2"])
        r = runner_mod.LinkRunner("a", links(first), first, view, babel, backend)
        await r._step()
        kept = [r.tunnels["mc-b-0"], r.tunnels["mc-b-1"]]
        r.reconfigure(dearer)
        await r._step()
        after_cost = [r.tunnels["mc-b-0"], r.tunnels["mc-b-1"]]
        r.reconfigure(moved)
        await r._step()
        return [kept, after_cost, [r.tunnels["mc-b-0"], r.tunnels["mc-b-1"]]]

    kept, after_cost, after_port = asyncio.run(go())
    assert after_cost == kept and after_port[0] is kept[0] and after_port[1] is not kept[1]  # type: ignore[index]
    assert sent == ["interface mc-b-0 type tunnel rxcost 96", "interface mc-b-1 type tunnel rxcost 96",
                    "flush interface mc-b-1", "interface mc-b-1 type tunnel rxcost 400",
                    "flush interface mc-b-1", "interface mc-b-1 type tunnel rxcost 400"]
    assert backend.devices["mc-b-1"].listen_port == 52009
