"""The gateway controller without I/O: refusals, roles, leases that outlive a silent controller, adoption,
and the upstream metric that never counts a route back through the asking client."""

from __future__ import annotations

import ipaddress

import pytest

from meshctl.babel.parser import parse_line
from meshctl.config import parse_config
from meshctl.topology.model import SelfInfo, TopologyModel
from meshctl.uplink.control import ROLE_NONE, ROLE_PRIMARY, ROLE_STANDBY, Message, decode, encode
from meshctl.uplink.gateway import (
    Announce,
    GatewayController,
    MeshPath,
    Withdraw,
    announced_by_client,
    mesh_path,
    upstream_metric,
)
from meshctl.wireguard.keys import KeyPair, write_private_key
from meshctl.wireguard.state import Device, Peer

CLIENT = KeyPair.generate()
SECRET = b"s" * 32
WALL = 1_700_000_000.0
UPSTREAM = ipaddress.ip_network("10.200.0.0/24")
ME = "02:00:00:00:00:00:00:02"


@pytest.fixture
def gw(tmp_path) -> GatewayController:  # noqa: ANN001
    key = tmp_path / "gw.key"
    write_private_key(str(key), KeyPair.generate())
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    data = {
        "node": {"name": "gw1", "babel": "unix:/run/b.sock", "control_socket": "/tmp/x.sock"},
        "gateway": {"interface": "wggw", "private_key_file": str(key), "address": "10.97.0.2/32",
                    "secret_file": str(secret), "lease": 2.0,
                    "client": [{"name": "client", "public_key": CLIENT.public,
                                "addresses": ["10.98.0.1/32", "fd98::1/128"], "mesh": "10.99.0.1/32"}]},
    }
    config = parse_config(data, "node.toml").gateway
    assert config is not None
    return GatewayController(config, "gw1")


def model(*lines: str) -> TopologyModel:
    m = TopologyModel(SelfInfo(ME))
    for line in lines:
        m.apply(parse_line(line))
    return m


# The client (router ...:01) is our neighbour fe80::1 on wg1; the upstream (...:05) is fe80::5 on wg5.
CLIENT_ROUTE = ("add route 1 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
                "metric 96 refmetric 0 via fe80::1 if wg1")
VIA_UPSTREAM = ("add route 2 prefix 10.200.0.0/24 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:05 "
                "metric 96 refmetric 0 via fe80::5 if wg5")
VIA_CLIENT = ("add route 3 prefix 10.200.0.0/24 from 0.0.0.0/0 installed no id 02:00:00:00:00:00:00:05 "
              "metric 352 refmetric 256 via fe80::1 if wg1")
DEFAULT_VIA_UPSTREAM = ("add route 4 prefix 0.0.0.0/0 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:05 "
                        "metric 200 refmetric 104 via fe80::5 if wg5")


def probe(seq: int, roles: tuple[int, int] = (ROLE_PRIMARY, ROLE_NONE), prefixes: tuple[str, ...] = ("10.200.0.0/24",),
          sender: str = "client") -> bytes:
    return encode(Message("probe", sender, seq, WALL, roles, prefixes), SECRET)


@pytest.mark.parametrize(
    ("lines", "metric"),
    [
        ((CLIENT_ROUTE, VIA_UPSTREAM), 96),
        ((CLIENT_ROUTE, VIA_UPSTREAM, VIA_CLIENT), 96),
        ((CLIENT_ROUTE, VIA_CLIENT), 65535),  # the only way onward is back through the client: none
        ((CLIENT_ROUTE,), 65535),
        ((CLIENT_ROUTE, DEFAULT_VIA_UPSTREAM), 200),  # a covering default route counts
        ((CLIENT_ROUTE, DEFAULT_VIA_UPSTREAM, VIA_CLIENT), 65535),  # ... unless a more specific one leads back
        ((CLIENT_ROUTE, "add xroute 10.200.0.0/16-0.0.0.0/0 prefix 10.200.0.0/16 from 0.0.0.0/0 metric 0"), 0),
    ],
)
def test_upstream_metric_never_counts_a_route_back_through_the_client(lines: tuple[str, ...], metric: int) -> None:
    assert upstream_metric(model(*lines), UPSTREAM, ipaddress.ip_network("10.99.0.1/32")) == metric


def test_a_probe_is_announced_then_acked_with_roles_and_metrics(gw: GatewayController) -> None:
    got = gw.receive(probe(1), "10.98.0.1", model(CLIENT_ROUTE, VIA_UPSTREAM), 0.0, WALL)
    assert got.rejected is None and got.actions == (Announce("client", 4, ROLE_PRIMARY),)
    assert got.ack is not None
    ack = decode(got.ack, SECRET, WALL)
    assert ack.kind == "ack" and ack.roles == (ROLE_PRIMARY, ROLE_NONE) and ack.metrics == (96,)
    # The same again: nothing to do.
    assert gw.receive(probe(2), "10.98.0.1", model(), 0.1, WALL).actions == ()
    # Asked to stand by for IPv6 as well, then to drop IPv4: it chose another gateway for it.
    assert gw.receive(probe(3, (ROLE_PRIMARY, ROLE_STANDBY)), "10.98.0.1", model(), 0.2, WALL).actions == (
        Announce("client", 6, ROLE_STANDBY),)
    got = gw.receive(probe(4, (ROLE_NONE, ROLE_STANDBY)), "fd98::1", model(), 0.3, WALL)
    assert got.actions == (Withdraw("client", 4, True, "it chose another gateway"),)


@pytest.mark.parametrize(
    ("data", "source", "reason"),
    [
        (probe(1), "10.98.0.9", "wrong-source"),  # not a client address: no MAC is even computed
        (b"\x00" * 10, "10.98.0.9", "wrong-source"),
        (probe(1, sender="mallory"), "10.98.0.1", "unknown-client"),
        (b"\x00" * 10, "10.98.0.1", "truncated"),
        (encode(Message("probe", "client", 1, WALL), b"x" * 32), "10.98.0.1", "bad-mac"),
    ],
)
def test_refusals(gw: GatewayController, data: bytes, source: str, reason: str) -> None:
    got = gw.receive(data, source, model(), 0.0, WALL)
    assert got.rejected == reason and got.ack is None and not gw.roles


def test_replays_are_refused(gw: GatewayController) -> None:
    gw.receive(probe(5), "10.98.0.1", model(), 0.0, WALL)
    assert gw.receive(probe(5), "10.98.0.1", model(), 0.1, WALL).rejected == "replay"


def test_one_source_flooding_is_cut_before_its_mac_is_checked(gw: GatewayController) -> None:
    rejected = [gw.receive(b"\x00" * 40, "10.98.0.1", model(), 0.0, WALL).rejected for _ in range(1000)]
    assert rejected.count("rate-limited") >= 890
    # A second later the bucket has refilled: a real probe gets through.
    assert gw.receive(probe(9), "10.98.0.1", model(), 1.0, WALL).rejected is None


def test_the_lease_outlives_a_silent_controller_while_its_peer_sends(gw: GatewayController) -> None:
    gw.receive(probe(1), "10.98.0.1", model(), 0.0, WALL)
    dev = lambda rx: Device("wggw", peers=(Peer(CLIENT.public, rx_bytes=rx),))  # noqa: E731
    gw.on_device(dev(100), 0.5)
    for t in (1.5, 2.5, 3.5, 4.5):  # the controller is gone; traffic still flows through its peer
        gw.on_device(dev(100 + int(t * 1000)), t)
        assert gw.expire(t, 1.0) == []
    # The peer falls silent as well: withdrawn after a lease and a poll.
    gw.on_device(dev(4600), 5.5)
    assert gw.expire(7.4, 1.0) == []
    assert gw.expire(7.6, 1.0) == [Withdraw("client", 4, False,
                                            "lease expired (2 s without a probe, and its peer silent)")]


def test_next_expiry_is_when_expire_can_first_withdraw(gw: GatewayController) -> None:
    assert gw.next_expiry(1.0) is None  # announcing nobody
    gw.receive(probe(1), "10.98.0.1", model(), 0.0, WALL)
    assert gw.next_expiry(1.0) == 2.0  # the lease
    dev = lambda rx: Device("wggw", peers=(Peer(CLIENT.public, rx_bytes=rx),))  # noqa: E731
    gw.on_device(dev(100), 0.5)
    gw.on_device(dev(200), 1.5)  # the peer sends: present until a lease and a poll after
    due = gw.next_expiry(1.0)
    assert due == 4.5
    assert gw.expire(due, 1.0) == [] and gw.expire(due + 0.001, 1.0) != []
    assert gw.next_expiry(1.0) is None


def test_routes_left_by_a_previous_run_are_kept_for_one_lease(gw: GatewayController) -> None:
    stale = gw.adopt({ipaddress.ip_network("10.98.0.1/32"): ROLE_PRIMARY,
                      ipaddress.ip_network("10.98.0.77/32"): ROLE_PRIMARY}, 0.0)
    assert stale == [ipaddress.ip_network("10.98.0.77/32")]
    assert gw.role("client", 4) == ROLE_PRIMARY
    # The client claims it: no action (already announced), lease renewed.
    assert gw.receive(probe(1), "10.98.0.1", model(), 1.0, WALL).actions == ()
    assert gw.expire(2.9, 1.0) == []
    # Had it not claimed it, one lease would have ended it.
    gw2 = GatewayController(gw.config, "gw1")
    gw2.adopt({ipaddress.ip_network("10.98.0.1/32"): ROLE_STANDBY}, 0.0)
    assert [a.client for a in gw2.expire(2.1, 1.0)] == ["client"]


def test_a_client_that_asks_nothing_of_us_is_withdrawn_at_once(gw: GatewayController) -> None:
    gw.adopt({ipaddress.ip_network("10.98.0.1/32"): ROLE_STANDBY}, 0.0)
    got = gw.receive(probe(1, (ROLE_NONE, ROLE_NONE)), "10.98.0.1", model(), 0.1, WALL)
    assert got.actions == (Withdraw("client", 4, True, "it chose another gateway"),)


def test_mesh_path_avoids_our_own_tunnel() -> None:
    m = model(CLIENT_ROUTE)
    assert mesh_path(m, ipaddress.ip_network("10.99.0.1/32"), "wggw") == MeshPath("fe80::1", "wg1", True)
    assert mesh_path(m, ipaddress.ip_network("10.99.0.1/32"), "wg1") is None


def test_watchdog_demotions_are_ip_batch_lines_with_the_right_next_hop_family() -> None:
    from meshctl.uplink.watchdog import demotions

    lines = demotions([("10.98.0.1/32", "fe80::1", "wg1"), ("fd98::1/128", None, "wggw"), ("10.98.0.2/32", "10.0.0.1", "e0")],
                      153)
    assert lines == ["route replace 10.98.0.1/32 via inet6 fe80::1 dev wg1 proto 153",
                     "route replace fd98::1/128 dev wggw proto 153",
                     "route replace 10.98.0.2/32 via 10.0.0.1 dev e0 proto 153"]


def test_a_gateway_whose_babeld_is_gone_reports_no_route(gw: GatewayController) -> None:
    """Its kernel routes outlive a dead babeld, but the mesh forgets them: the client must leave at once."""
    got = gw.receive(probe(1), "10.98.0.1", model(CLIENT_ROUTE, VIA_UPSTREAM), 0.0, WALL, synced=False)
    assert got.ack is not None and decode(got.ack, SECRET, WALL).metrics == (65535,)


def test_a_client_behind_a_relay_is_not_direct() -> None:
    m = model("add route 1 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
              "metric 192 refmetric 96 via fe80::4 if wg4")
    assert mesh_path(m, ipaddress.ip_network("10.99.0.1/32"), "wggw") == MeshPath("fe80::4", "wg4", False)


def test_a_link_to_the_client_wins_over_a_cheaper_relayed_path() -> None:
    """Through the link the hand-off ends at the client; through a relay it may come back to us."""
    m = model("add route 1 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
              "metric 192 refmetric 96 via fe80::4 if wg4",
              "add route 2 prefix 10.99.0.1/32 from 0.0.0.0/0 installed no id 02:00:00:00:00:00:00:01 "
              "metric 384 refmetric 0 via fe80::1 if wg1")
    assert mesh_path(m, ipaddress.ip_network("10.99.0.1/32"), "wggw") == MeshPath("fe80::1", "wg1", True)
    # ... but not when that link is our own uplink tunnel, nor when it is unreachable
    assert mesh_path(m, ipaddress.ip_network("10.99.0.1/32"), "wg1") == MeshPath("fe80::4", "wg4", False)
    m2 = model("add route 1 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
               "metric 192 refmetric 96 via fe80::4 if wg4",
               "add route 2 prefix 10.99.0.1/32 from 0.0.0.0/0 installed no id 02:00:00:00:00:00:00:01 "
               "metric 65535 refmetric 0 via fe80::1 if wg1")
    assert mesh_path(m2, ipaddress.ip_network("10.99.0.1/32"), "wggw") == MeshPath("fe80::4", "wg4", False)


def test_the_clients_own_announcement_is_told_by_its_router_id() -> None:
    """Our address's route from the client's router (the one its mesh address comes from): its own announcement."""
    mesh, own = ipaddress.ip_network("10.99.0.1/32"), ipaddress.ip_network("10.98.0.1/32")
    relayed_mesh = ("add route 1 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
                    "metric 192 refmetric 96 via fe80::4 if wg4")
    from_client = ("add route 2 prefix 10.98.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:01 "
                   "metric 192 refmetric 96 via fe80::4 if wg4")
    from_gateway = ("add route 3 prefix 10.98.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:07 "
                    "metric 96 refmetric 0 via fe80::7 if wg7")
    unreachable = from_client.replace("metric 192", "metric 65535")
    assert announced_by_client(model(relayed_mesh, from_client, from_gateway), own, mesh)
    assert not announced_by_client(model(relayed_mesh, from_gateway), own, mesh)  # only another gateway's
    assert not announced_by_client(model(relayed_mesh, unreachable), own, mesh)
    assert not announced_by_client(model(from_client), own, mesh)  # no route to the client: cannot tell it
    assert not announced_by_client(model(relayed_mesh, from_client), own, None)


def test_next_hops_for_each_family() -> None:
    import socket

    from meshctl.uplink.routes import next_hop

    v4, v6 = ipaddress.ip_network("10.98.0.1/32"), ipaddress.ip_network("fd98::1/128")
    assert next_hop(v4, "fe80::1") == {"via": {"family": socket.AF_INET6, "addr": "fe80::1"}}  # RTA_VIA
    assert next_hop(v6, "fe80::1") == {"gateway": "fe80::1"}  # an IPv6 route takes RTA_GATEWAY, RTA_VIA is refused
    assert next_hop(v4, "10.0.0.1") == {"gateway": "10.0.0.1"}
    assert next_hop(v4, None) == {}


def test_answers_follow_the_model_though_they_are_worked_out_once_per_version(gw: GatewayController) -> None:
    m = model(CLIENT_ROUTE, VIA_UPSTREAM)
    acks = [decode(gw.receive(probe(seq), "10.98.0.1", m, seq / 10, WALL).ack or b"", SECRET, WALL) for seq in (1, 2)]
    assert [a.metrics for a in acks] == [(96,), (96,)]
    m.apply(parse_line(VIA_UPSTREAM.replace("add", "flush", 1)))  # the upstream route is gone: a new version
    got = gw.receive(probe(3), "10.98.0.1", m, 0.3, WALL)
    assert decode(got.ack or b"", SECRET, WALL).metrics == (65535,)
    # A new model (a resync) is never answered from the old one's figures, whatever its version.
    fresh = model(CLIENT_ROUTE, VIA_UPSTREAM)
    fresh.version = m.version
    assert decode(gw.receive(probe(4), "10.98.0.1", fresh, 0.4, WALL).ack or b"", SECRET, WALL).metrics == (96,)
