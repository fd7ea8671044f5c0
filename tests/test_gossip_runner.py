"""The gossip runner's source filter: only link-local senders on babeld's interfaces reach the decoder."""

from __future__ import annotations

import socket

from meshctl.babel import events as ev
from meshctl.config import GossipConfig
from meshctl.gossip.runner import GossipRunner, is_link_local
from meshctl.gossip.signing import SigningKey
from meshctl.gossip.table import Identity
from meshctl.topology.model import MeshView

LO = socket.if_nametoindex("lo")


def runner(*interfaces: str) -> GossipRunner:
    view = MeshView()
    for name in interfaces:
        view.model.apply(ev.InterfaceUpdate(ev.Kind.ADD, name, True))
    key = SigningKey.generate()
    return GossipRunner(GossipConfig(key, 51903, 60.0, (("n1", key.public),)), Identity("n1"), view)


def test_link_local_sources_only() -> None:
    assert is_link_local(("fe80::1%wg0", 51903, 0, 7))
    assert is_link_local(("febf::1%wg0", 51903, 0, 7))
    assert not is_link_local(("fec0::1", 51903, 0, 7))
    assert not is_link_local(("fe8::1", 51903, 0, 7))  # 0fe8::, not fe80::/10
    assert not is_link_local(("2001:db8::1", 51903, 0, 0))  # the underlay's global addresses
    assert not is_link_local(("fe80::1", 51903, 0, 0))  # no interface: cannot be a Babel neighbour
    assert not is_link_local(("192.0.2.1", 51903))


def test_only_babelds_interfaces_are_the_mesh() -> None:
    r = runner("lo")
    assert r.from_mesh(("fe80::1%lo", 51903, 0, LO), 0.0)  # a miss looks the interfaces up
    assert r.mesh_ifindexes == {LO}
    assert not r.from_mesh(("fe80::1%eth9", 51903, 0, LO + 1000), 0.1)  # an underlay interface
    assert not r.from_mesh(("2001:db8::1", 51903, 0, 0), 0.2)


def test_a_flood_from_unknown_interfaces_looks_them_up_at_most_twice_a_second() -> None:
    r = runner()
    lookups = 0
    real = r.refresh_interfaces

    def counting(now: float) -> None:
        nonlocal lookups
        lookups += 1
        real(now)

    r.refresh_interfaces = counting  # type: ignore[method-assign]
    for i in range(1000):
        assert not r.from_mesh(("fe80::1%eth9", 51903, 0, 99), i / 1000)  # 1000 datagrams in one second
    assert lookups == 2
    r.view.model.apply(ev.InterfaceUpdate(ev.Kind.ADD, "lo", True))  # babeld got a new interface
    assert r.from_mesh(("fe80::1%lo", 51903, 0, LO), 1.5)


def test_a_datagram_from_a_neighbour_is_kept_and_one_from_the_underlay_is_not_read() -> None:
    from meshctl.gossip.table import Description, NodeInfo, sign

    r = runner("lo")
    other = SigningKey.generate()
    r.table.trusted["n2"] = other.private.public_key()
    data = sign(Description("n2", 1, 1e9, 60.0, NodeInfo("n2", "rid-n2")), other.private)
    r.datagram(data, ("2001:db8::2", 51903, 0, 0), 0.0, 1e9)
    assert r.table.rejected == {"underlay": 1} and r.bytes_in == 0
    r.datagram(data, ("fe80::2%lo", 51903, 0, LO), 0.0, 1e9)
    assert set(r.table.entries) == {"n2"} and r.bytes_in == len(data)
