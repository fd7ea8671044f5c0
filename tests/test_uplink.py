"""The uplink controller without I/O: probes, liveness, desired WireGuard state."""

from __future__ import annotations

import ipaddress

from meshctl.babel.parser import parse_line
from meshctl.config import parse_config
from meshctl.topology.model import SelfInfo, TopologyModel
from meshctl.uplink.client import UplinkController
from meshctl.uplink.control import ROLE_PRIMARY, Message
from tests.test_config import GW1, GW2, files, good  # noqa: F401 - fixture

STEER = ipaddress.ip_network("0.0.0.0/0")


def controller(files: dict) -> UplinkController:  # noqa: F811
    config = parse_config(good(files), "node.toml")
    return UplinkController(config.uplinks[0], "client", start_ns=1000)


def model() -> TopologyModel:
    m = TopologyModel(SelfInfo("02:00:00:00:00:00:00:01"))
    m.apply(parse_line("add route 1 prefix 10.99.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
                       "metric 96 refmetric 0 via fe80::2 if wg1"))
    m.apply(parse_line("add route 2 prefix 10.99.0.9/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:03 "
                       "metric 160 refmetric 0 via fe80::3 if wg2"))
    return m


def ack(ctl: UplinkController, gw: str, seq: int, now: float) -> bool:
    return ctl.on_ack(gw, Message("ack", gw, seq, 0.0, ROLE_PRIMARY), now)


def test_nothing_is_chosen_until_gateways_answer(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    assert ctl.decide(model(), None, 0.0, 0.0) is None
    probes = ctl.probes_to_send(0.0, 0.0)
    assert [g.name for g, _ in probes] == ["gw1", "gw2"]
    assert ack(ctl, "gw1", probes[0][1].seq, 0.01) is True
    assert ack(ctl, "gw2", probes[1][1].seq, 0.01) is True
    switch = ctl.decide(model(), None, 0.02, 0.0)
    assert switch is not None and switch.new == "gw1"  # metric 96 (by mesh prefix) vs 160 (by router id)


def test_unsolicited_or_duplicate_acks_are_ignored(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    probes = ctl.probes_to_send(0.0, 0.0)
    assert ack(ctl, "gw1", 999, 0.01) is False
    assert ack(ctl, "gw1", probes[0][1].seq, 0.01) is True
    assert ack(ctl, "gw1", probes[0][1].seq, 0.02) is False
    assert ack(ctl, "nobody", 1, 0.02) is False


def test_silence_makes_a_gateway_down(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    probes = ctl.probes_to_send(0.0, 0.0)
    ack(ctl, "gw1", probes[0][1].seq, 0.0)
    ack(ctl, "gw2", probes[1][1].seq, 0.0)
    assert {c.name: c.alive for c in ctl.candidates(model(), None, 0.3, 0.0)} == {"gw1": True, "gw2": True}
    assert {c.name: c.alive for c in ctl.candidates(model(), None, 0.4, 0.0)} == {"gw1": False, "gw2": False}


def test_desired_device_gives_steer_to_the_chosen_only(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    probes = ctl.probes_to_send(0.0, 0.0)
    for gw, msg in probes:
        ack(ctl, gw.name, msg.seq, 0.0)
    ctl.decide(model(), None, 0.01, 0.0)
    dev = ctl.desired()
    by_key = {p.public_key: p for p in dev.peers}
    assert STEER in by_key[GW1.public].allowed_ips
    assert STEER not in by_key[GW2.public].allowed_ips
    assert ipaddress.ip_network("10.97.0.3/32") in by_key[GW2.public].allowed_ips
    assert all(p.persistent_keepalive == 10 for p in dev.peers)
    assert dev.private_key == ctl.config.keys.private


def test_the_holder_keeps_the_steered_prefixes_during_a_planned_switch(files: dict) -> None:  # noqa: F811
    """While the return path is prepared, a device re-sync must not move the prefixes early."""
    ctl = controller(files)
    probes = ctl.probes_to_send(0.0, 0.0)
    for gw, message in probes:
        ack(ctl, gw.name, message.seq, 0.0)
    ctl.decide(model(), None, 0.01, 0.0)
    assert ctl.state.chosen == "gw1"
    ctl.state = type(ctl.state)(chosen="gw2")  # the policy has moved on ...
    ctl.holder = "gw1"  # ... but the switch is still being prepared
    owners = {p.public_key for p in ctl.desired().peers if STEER in p.allowed_ips}
    assert owners == {GW1.public}
    ctl.holder = None
    owners = {p.public_key for p in ctl.desired().peers if STEER in p.allowed_ips}
    assert owners == {GW2.public}
