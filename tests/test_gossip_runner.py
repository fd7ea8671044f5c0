"""The gossip runner: only link-local senders on babeld's interfaces reach the decoder; what it relays, and when."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket

from meshctl.babel import events as ev
from meshctl.config import GossipConfig
from meshctl.gossip.runner import RELAY_HOLD, GossipRunner, is_link_local
from meshctl.gossip.signing import SigningKey, public_text
from meshctl.gossip.table import Description, Identity, NodeInfo, bundle, sign
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
    r.table.trusted["n2"] = other.private.verify_key
    data = sign(Description("n2", 1, 1e9, 60.0, NodeInfo("n2", "rid-n2")), other.private)
    r.datagram(data, ("2001:db8::2", 51903, 0, 0), 0.0, 1e9)
    assert r.table.rejected == {"underlay": 1} and r.bytes_in == 0
    r.datagram(data, ("fe80::2%lo", 51903, 0, LO), 0.0, 1e9)
    assert set(r.table.entries) == {"n2"} and r.bytes_in == len(data)


class Wire:
    """Stands in for the socket: records (datagram, address) sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []

    def sendto(self, data: bytes, addr: tuple) -> None:
        self.sent.append((data, addr[0]))


def neighboured(*addresses: str) -> tuple[GossipRunner, Wire, dict]:
    """A runner whose babeld has neighbours at ``addresses`` on lo, a wire, and keys for a and b."""
    import ipaddress

    from nacl.signing import SigningKey as Ed25519PrivateKey

    view = MeshView()
    view.model.apply(ev.InterfaceUpdate(ev.Kind.ADD, "lo", True))
    for i, a in enumerate(addresses):
        view.model.apply(ev.NeighbourUpdate(ev.Kind.ADD, str(i), ipaddress.ip_address(a), "lo", 0xFFFF, 0, 96, 96, 96))
    keys = {n: Ed25519PrivateKey.generate() for n in ("a", "b")}
    mine = SigningKey.generate()
    trusted = (("n1", mine.public),) + tuple((n, public_text(k.verify_key)) for n, k in keys.items())
    r = GossipRunner(GossipConfig(mine, 51903, 60.0, trusted), Identity("n1"), view)
    wire = Wire()
    r._raw = wire  # type: ignore[assignment]
    return r, wire, keys


def source(address: str) -> tuple:
    return (f"{address}%lo", 51903, 0, LO)


async def test_a_refresh_waits_for_its_wave_and_skips_neighbours_that_sent_it() -> None:
    r, wire, keys = neighboured("fe80::2", "fe80::3", "fe80::4")
    r._loop = asyncio.get_running_loop()
    first = sign(Description("a", 1, 1e9, 60.0, NodeInfo("a", "rid-a")), keys["a"])
    r.datagram(first, source("fe80::2"), 0.0, 1e9)
    assert sorted(a for _, a in wire.sent) == ["fe80::3", "fe80::4"]  # news: at once, not back to its sender
    wire.sent.clear()
    refresh = sign(Description("a", 2, 1e9 + 20, 60.0, NodeInfo("a", "rid-a")), keys["a"])
    r.datagram(refresh, source("fe80::2"), 20.0, 1e9 + 20)
    r.datagram(refresh, source("fe80::3"), 20.01, 1e9 + 20)  # the same refresh by another way
    assert wire.sent == []  # a refresh waits for the rest of its wave
    await asyncio.sleep(RELAY_HOLD * 1.5)
    assert wire.sent == [(refresh, "fe80::4")]  # only the neighbour that did not send it to us


async def test_a_change_is_relayed_at_once() -> None:
    r, wire, keys = neighboured("fe80::2", "fe80::3")
    r._loop = asyncio.get_running_loop()
    r.datagram(sign(Description("b", 1, 1e9, 60.0, NodeInfo("b", "rid-b")), keys["b"]), source("fe80::2"), 0.0, 1e9)
    wire.sent.clear()
    moved = sign(Description("b", 2, 1e9 + 1, 60.0, NodeInfo("b", "rid-b", prefixes=("10.1.0.0/24",))), keys["b"])
    r.datagram(moved, source("fe80::3"), 1.0, 1e9 + 1)
    assert wire.sent == [(moved, "fe80::2")]


def test_the_runner_sleeps_until_something_is_due() -> None:
    r, wire, _ = neighboured("fe80::2")
    r.view.synced = True
    r.view.model.me = dataclasses.replace(r.view.model.me, router_id="02:00:00:00:00:00:00:01")
    wall = 1_000_000_005.0  # 5 s into a 20 s slot (lifetime 60 s)
    deadline = r.step(100.0, wall)
    assert len(wire.sent) == 1  # our first description, to the one neighbour
    assert deadline == 115.0  # the next slot, 15 s away
    wire.sent.clear()
    assert r.step(105.0, wall + 5) == 115.0 and wire.sent == []  # woken early (the model changed): nothing due
    assert r.step(115.0, wall + 15) == 135.0 and len(wire.sent) == 1  # the slot: a refresh; then the next slot
    r2, wire2, _ = neighboured("fe80::2")
    r2.view.synced, r2.view.model.me = True, r.view.model.me
    assert r2.step(100.0, 1_000_000_012.0) == 128.0  # 8 s before a slot: too close, the refresh waits for the next


async def test_a_wave_goes_as_one_bundle_to_a_neighbour_that_takes_them() -> None:
    from meshctl.babel.parser import parse_line

    r, wire, keys = neighboured("fe80::2", "fe80::3")
    r._loop = asyncio.get_running_loop()
    # babeld shows fe80::3 originating its own address: that is router rid-b, whose description says it bundles.
    r.view.model.apply(parse_line("add route 9 prefix 10.99.0.3/32 from 0.0.0.0/0 installed yes id rid-b "
                                  "metric 96 refmetric 0 via fe80::3 if lo"))
    b = sign(Description("b", 1, 1e9, 60.0, NodeInfo("b", "rid-b"), bundles=True), keys["b"])
    a = sign(Description("a", 1, 1e9, 60.0, NodeInfo("a", "rid-a")), keys["a"])
    r.datagram(b, source("fe80::3"), 0.0, 1e9)
    r.datagram(a, source("fe80::3"), 0.0, 1e9)
    wire.sent.clear()
    refreshes = [sign(Description(n, 2, 1e9 + 20, 60.0, NodeInfo(n, f"rid-{n}"), bundles=n == "b"), keys[n])
                 for n in ("a", "b")]
    r.datagram(bundle(refreshes)[0], source("fe80::2"), 20.0, 1e9 + 20)  # the wave, in one bundle
    await asyncio.sleep(RELAY_HOLD * 1.5)
    assert wire.sent == [(bundle(refreshes)[0], "fe80::3")]  # one send; fe80::2 sent them, so it gets none
    assert r.table.accepted == 4


def test_a_neighbour_not_known_to_take_bundles_gets_plain_datagrams() -> None:
    r, wire, keys = neighboured("fe80::2", "fe80::3")
    news = [sign(Description(n, 1, 1e9, 60.0, NodeInfo(n, f"rid-{n}")), keys[n]) for n in ("a", "b")]
    r.datagram(bundle(news)[0], source("fe80::2"), 0.0, 1e9)
    assert sorted(wire.sent) == sorted((d, "fe80::3") for d in news)


async def test_a_chattering_model_is_looked_at_every_model_look_not_on_every_change() -> None:
    from meshctl.gossip.runner import MODEL_LOOK

    view = MeshView()
    key = SigningKey.generate()
    r = GossipRunner(GossipConfig(key, 0, 60.0, (("n1", key.public),)), Identity("n1"), view)
    steps = 0
    real = r.step

    def counting(now: float, wall: float) -> float:
        nonlocal steps
        steps += 1
        return real(now, wall)

    r.step = counting  # type: ignore[method-assign]
    task = asyncio.create_task(r.run())
    try:
        await asyncio.sleep(0.05)
        assert steps == 1  # the first look; then nothing is due for a long while
        for i in range(100):  # babeld's chatter: the model changes every 5 ms for half a second
            view.apply(ev.InterfaceUpdate(ev.Kind.ADD, f"wg{i}", True))
            view._changed()
            await asyncio.sleep(0.005)
        await asyncio.sleep(MODEL_LOOK * 1.5)
        assert 2 <= steps <= 1 + 0.5 / MODEL_LOOK + 2  # a look per MODEL_LOOK, and one after the last change
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_socket_is_read_as_datagrams_come_and_closed_when_the_runner_stops() -> None:
    r = runner()
    r.config = dataclasses.replace(r.config, port=0)
    task = asyncio.create_task(r.run())
    try:
        await asyncio.sleep(0.01)
        assert r._raw is not None
        port = r._raw.getsockname()[1]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            for size in (10, 70000 // 2, 200):  # from ::1: read, and refused as the underlay's
                s.sendto(b"x" * size, ("::1", port))
        for _ in range(100):
            if r.table.rejected["underlay"] == 3:
                break
            await asyncio.sleep(0.01)
        assert r.table.rejected["underlay"] == 3 and r.bytes_in == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert r._raw.fileno() == -1
