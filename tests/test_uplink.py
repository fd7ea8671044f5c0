"""The uplink controller without I/O: probes, adoption, make-before-break, checks; a fake clock throughout."""

from __future__ import annotations

import ipaddress

import pytest

from meshctl.babel.parser import parse_line
from meshctl.config import parse_config
from meshctl.topology.model import SelfInfo, TopologyModel
from meshctl.uplink.client import PREPARE, RELEASE, UplinkController
from meshctl.uplink.control import ROLE_NONE, ROLE_PRIMARY, ROLE_STANDBY, Message
from meshctl.wireguard.state import Device, Peer
from tests.test_config import GW1, GW2, files, good  # noqa: F401 - fixture

STEER = ipaddress.ip_network("0.0.0.0/0")
CLIENT_ADDR = "add route 9 prefix 10.98.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:{rid} " \
              "metric 200 refmetric 0 via fe80::{rid} if wg{rid}"


def controller(files: dict, **uplink: object) -> UplinkController:  # noqa: F811
    data = good(files)
    data["uplink"][0].update(uplink)
    config = parse_config(data, "node.toml")
    return UplinkController(config.uplinks[0], "client", start_ns=1000)


def model(gw1: int = 96, gw2: int = 160) -> TopologyModel:
    m = TopologyModel(SelfInfo("02:00:00:00:00:00:00:01"))
    m.apply(parse_line("add route 1 prefix 10.99.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
                       f"metric {gw1} refmetric 0 via fe80::2 if wg1"))
    m.apply(parse_line("add route 2 prefix 10.99.0.9/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:03 "
                       f"metric {gw2} refmetric 0 via fe80::3 if wg2"))
    return m


def device(holder: str | None = None, handshake: float = 1.0) -> Device:
    peers = []
    for name, key, control in (("gw1", GW1.public, "10.97.0.2/32"), ("gw2", GW2.public, "10.97.0.3/32")):
        allowed = {ipaddress.ip_network(control)} | ({STEER} if name == holder else set())
        peers.append(Peer(key, allowed_ips=frozenset(allowed), last_handshake=handshake))
    return Device("wgup", peers=tuple(peers))


def answer(ctl: UplinkController, now: float, roles: dict[str, tuple[int, int]] | None = None,
           upstream: dict[str, int] | None = None, only: tuple[str, ...] = ("gw1", "gw2")) -> None:
    """Every probe due now is answered at once (by the gateways in ``only``)."""
    for gw, probe in ctl.probes_to_send(now, 0.0, everyone=True):
        if gw.name in only:
            role = (roles or {}).get(gw.name, probe.roles)
            metrics = (upstream or {}).get(gw.name, 0)
            ctl.on_ack(gw.name, Message("ack", gw.name, probe.seq, 0.0, role, (), (metrics,)), now)


def holders(ctl: UplinkController) -> set[str]:
    dev = ctl.desired()
    assert dev is not None
    by_key = {GW1.public: "gw1", GW2.public: "gw2"}
    return {by_key[p.public_key] for p in dev.peers if STEER in p.allowed_ips}


def started(files: dict, **uplink: object) -> UplinkController:  # noqa: F811
    """Adopted an empty device, both gateways answering, gw1 chosen and written."""
    ctl = controller(files, **uplink)
    ctl.on_device(device(None), 0.0)
    answer(ctl, 0.0)
    ctl.step(model(), True, device(None), 0.01, 1.0)
    ctl.written(True, 0.02)
    assert ctl.groups[4].state.chosen == "gw1" and holders(ctl) == {"gw1"}
    return ctl


def test_nothing_is_written_before_the_device_was_read(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    answer(ctl, 0.0)
    ctl.step(model(), True, None, 0.01, 1.0)
    assert ctl.desired() is None and ctl.groups[4].state.chosen is None


def test_nothing_is_chosen_until_gateways_answer(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    ctl.step(model(), True, device(None), 0.0, 1.0)
    assert ctl.groups[4].state.chosen is None
    answer(ctl, 0.0)
    ctl.step(model(), True, device(None), 0.02, 1.0)
    assert ctl.groups[4].state.chosen == "gw1"  # metric 96 (by mesh prefix) vs 160 (by router id)
    done = ctl.written(True, 0.03)
    assert [(d.switch.new, d.switch.cause, d.planned) for d in done] == [("gw1", "initial", False)]


def test_a_restarted_controller_adopts_what_the_device_holds(files: dict) -> None:  # noqa: F811
    """gw2 holds the prefixes although gw1 is better: kept (no write), then left only by a planned switch."""
    ctl = controller(files)
    adopted = ctl.on_device(device("gw2"), 0.0)
    assert adopted is not None and adopted.new == "gw2" and adopted.cause == "adopted"
    assert holders(ctl) == {"gw2"}
    # Before any probe is answered, gw2's state is unknown: kept, not left as "down".
    step = ctl.step(model(), True, device("gw2"), 0.05, 1.0)
    assert ctl.groups[4].state.chosen == "gw2" and holders(ctl) == {"gw2"} and not step.probe_now
    answer(ctl, 0.1)
    ctl.step(model(), True, device("gw2"), 0.1, 1.0)
    assert ctl.groups[4].state.challenger == "gw1"  # better by 64 > margin: the hold starts
    assert holders(ctl) == {"gw2"}


def test_no_probe_asks_anything_before_the_device_was_read(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    assert ctl.probes_to_send(0.0, 0.0, everyone=True) == []
    ctl.on_device(device("gw1"), 0.0)
    assert [p.roles for _, p in ctl.probes_to_send(0.0, 0.0, everyone=True)] == [(ROLE_PRIMARY, 0), (ROLE_NONE, 0)]


def test_unsolicited_or_duplicate_acks_are_ignored(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    probes = ctl.probes_to_send(0.0, 0.0)
    ack = Message("ack", "gw1", probes[0][1].seq, 0.0, (ROLE_PRIMARY, ROLE_NONE))
    assert ctl.on_ack("gw1", Message("ack", "gw1", 999, 0.0), 0.01) is False
    assert ctl.on_ack("gw1", ack, 0.01) is True
    assert ctl.on_ack("gw1", ack, 0.02) is False
    assert ctl.on_ack("nobody", ack, 0.02) is False


def test_silence_makes_a_gateway_down(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    answer(ctl, 0.0)
    assert {c.name: c.alive for c in ctl.candidates(4, model(), None, 0.3, 0.0)} == {"gw1": True, "gw2": True}
    assert {c.name: c.alive for c in ctl.candidates(4, model(), None, 0.4, 0.0)} == {"gw1": False, "gw2": False}


def test_backups_are_probed_less_often(files: dict) -> None:  # noqa: F811
    ctl = started(files, probe_interval=0.05, backup_probe_interval=0.2)
    sent = {"gw1": 0, "gw2": 0}
    now = 1.0
    while now < 2.0:
        for gw, _ in ctl.probes_to_send(now, 0.0):
            sent[gw.name] += 1
        now += 0.01
    assert 19 <= sent["gw1"] <= 22 and 5 <= sent["gw2"] <= 6
    assert ctl.timeout_for("gw2") == pytest.approx(0.2 * 3.5)


def test_a_late_tick_still_probes_on_every_beat_and_an_extra_probe_postpones_none(files: dict) -> None:  # noqa: F811
    """Probes go out on the grid k * probe_interval; a tick that runs 20 ms late must not skip the next one."""
    ctl = started(files, probe_interval=0.05, backup_probe_interval=0.1)
    sent: dict[str, list[float]] = {"gw1": [], "gw2": []}
    for k in range(20, 40):
        beat = k * 0.05
        for gw, _ in ctl.probes_to_send(beat + 0.02, 0.0, beat=beat):  # each tick 20 ms behind its beat
            sent[gw.name].append(beat)
    assert len(sent["gw1"]) == 20 and len(sent["gw2"]) == 10  # every beat; every other one for the backup
    # An extra probe between beats (a decision's) leaves the regular schedule as it was.
    due = ctl.next_probe()
    ctl.probes_to_send(due - 0.03, 0.0, everyone=True)
    assert ctl.next_probe() == due


def test_a_gateway_is_judged_silent_at_its_own_deadline_not_at_the_beat_after(files: dict) -> None:  # noqa: F811
    """silent_at: when the first answering gateway's silence runs out (probe_loss missed answers)."""
    ctl = started(files, probe_interval=0.05, backup_probe_interval=0.1, probe_loss=3)
    answer(ctl, 1.003)  # both answer 3 ms after the beat at 1.0
    at = ctl.silent_at(1.01)
    # gw1 carries traffic: 0.05 * 3.5 = 175 ms after its last answer; gw2, a backup, is judged later (350 ms).
    assert at == pytest.approx(1.178, abs=0.001) and at < 1.2  # before the beat at 1.2
    assert ctl.alive("gw1", at - 0.0002) is True and ctl.alive("gw1", at) is False
    assert ctl.alive("gw2", at) is True
    answer(ctl, 1.053, only=("gw1",))  # an answer moves the deadline on: while gateways answer, it never comes
    assert ctl.silent_at(1.06) == pytest.approx(1.228, abs=0.001)
    # Once gw1 is silent, the next deadline is the backup's; once none answers, there is none.
    assert ctl.silent_at(1.25) == pytest.approx(1.003 + 0.35, abs=0.001)
    assert ctl.silent_at(1.4) is None


def test_no_silence_deadline_for_a_gateway_that_never_answered(files: dict) -> None:  # noqa: F811
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    ctl.probes_to_send(0.0, 0.0, everyone=True)
    assert ctl.silent_at(0.01) is None  # unknown, not answering: judged on the beat as before


def test_a_gateway_found_silent_stays_down_until_it_answers_again(files: dict) -> None:  # noqa: F811
    """Left for its silence, gw1 becomes a backup, judged on a slower pace (700 ms, not 350): its last answer
    must not count as fresh again on that pace (status "up", then "stopped answering" a second time)."""
    ctl = started(files, probe_interval=0.1, backup_probe_interval=0.2, probe_loss=3)
    answer(ctl, 1.0)
    answer(ctl, 1.1, only=("gw2",))
    answer(ctl, 1.2, only=("gw2",))
    answer(ctl, 1.3, only=("gw2",))
    assert ctl.silent_at(1.3) == pytest.approx(1.35, abs=0.001)
    ctl.step(model(), True, device("gw1"), 1.351, 2.0)
    done = ctl.written(True, 1.36)
    assert [(d.switch.old, d.switch.new, d.switch.cause) for d in done] == [("gw1", "gw2", "down")]
    assert ctl.timeout_for("gw1") == pytest.approx(0.7)  # a backup now: 1.0 + 0.7 is still ahead
    for now in (1.36, 1.5, 1.69):
        answer(ctl, now, only=("gw2",))
        assert ctl.alive("gw1", now) is False
        assert {c.name: c.alive for c in ctl.candidates(4, model(), None, now, 2.0)}["gw1"] is False
        ctl.step(model(), True, device("gw2"), now, 2.0)
        assert ctl.groups[4].state.chosen == "gw2"
        assert ctl.silent_at(now) == pytest.approx(now + 0.35, abs=0.001)  # gw2's deadline: none for gw1
    answer(ctl, 1.75, only=("gw1",))  # it answers again: up, and judged on a backup's pace
    assert ctl.alive("gw1", 1.75) is True and ctl.alive("gw1", 2.44) is True and ctl.alive("gw1", 2.46) is False


def test_a_gateway_without_a_route_onward_is_left_at_once(files: dict) -> None:  # noqa: F811
    ctl = started(files)
    answer(ctl, 1.0, upstream={"gw1": 65535, "gw2": 96})
    ctl.step(model(), True, device("gw1"), 1.0, 2.0)
    done = ctl.written(True, 1.01)
    assert [(d.switch.new, d.switch.cause, d.planned) for d in done] == [("gw2", "no-route", False)]
    assert holders(ctl) == {"gw2"}


def test_path_metric_ranks_by_the_whole_path(files: dict) -> None:  # noqa: F811
    """gw1 is nearer (96 vs 160) but 200 further onward: gw2 wins after the hold."""
    ctl = started(files)
    answer(ctl, 1.0, upstream={"gw1": 200, "gw2": 0})
    ctl.step(model(), True, device("gw1"), 1.0, 2.0)
    assert ctl.groups[4].state.challenger == "gw2"
    views = {c.name: c.path for c in ctl.candidates(4, model(), device("gw1"), 1.0, 2.0)}
    assert views == {"gw1": 296, "gw2": 160}


def test_planned_switch_goes_through_standby_and_release(files: dict) -> None:  # noqa: F811
    ctl = started(files)
    m = model(gw1=300, gw2=96)
    answer(ctl, 1.0)
    ctl.step(m, True, device("gw1"), 1.0, 2.0)  # the hold starts
    answer(ctl, 4.0)
    step = ctl.step(m, True, device("gw1"), 4.0, 5.0)
    g = ctl.groups[4]
    assert g.transition is not None and g.transition.phase == PREPARE and step.probe_now
    assert ctl.roles_for("gw1")[0] == ROLE_PRIMARY and ctl.roles_for("gw2")[0] == ROLE_STANDBY
    assert holders(ctl) == {"gw1"}  # nothing moves yet
    # gw2 says it is a standby, and Babel shows our address from gw2's router: on to RELEASE.
    answer(ctl, 4.05, roles={"gw1": (ROLE_PRIMARY, 0), "gw2": (ROLE_STANDBY, 0)})
    m.apply(parse_line(CLIENT_ADDR.format(rid="03")))
    ctl.step(m, True, device("gw1"), 4.05, 5.0)
    assert g.transition is not None and g.transition.phase == RELEASE
    assert ctl.roles_for("gw1")[0] == ROLE_NONE and holders(ctl) == {"gw1"}
    # gw1 confirms: the write moves the prefixes; then gw2 is primary.
    answer(ctl, 4.1, roles={"gw1": (ROLE_NONE, 0), "gw2": (ROLE_STANDBY, 0)})
    ctl.step(m, True, device("gw1"), 4.1, 5.0)
    assert holders(ctl) == {"gw2"}
    done = ctl.written(True, 4.102)
    assert [(d.switch.old, d.switch.new, d.switch.cause, d.planned) for d in done] == [("gw1", "gw2", "better", True)]
    assert done[0].prepare == pytest.approx(0.1) and done[0].reaction == pytest.approx(0.002)
    assert g.transition is None and ctl.roles_for("gw2")[0] == ROLE_PRIMARY


def test_planned_switch_needs_no_standby_route_where_we_announce_ourselves(files: dict) -> None:  # noqa: F811
    """Our own announcement is the mesh's way back: the new gateway standing by is enough, at once."""
    ctl = started(files)
    m = model(gw1=300, gw2=96)
    m.apply(parse_line("add xroute 10.98.0.1/32-0.0.0.0/0 prefix 10.98.0.1/32 from 0.0.0.0/0 metric 0"))
    answer(ctl, 1.0)
    ctl.step(m, True, device("gw1"), 1.0, 2.0)
    answer(ctl, 4.0)
    ctl.step(m, True, device("gw1"), 4.0, 5.0)
    g = ctl.groups[4]
    assert g.transition is not None and g.transition.phase == PREPARE
    answer(ctl, 4.01, roles={"gw1": (ROLE_PRIMARY, 0), "gw2": (ROLE_NONE, 0)})
    ctl.step(m, True, device("gw1"), 4.01, 5.0)
    assert g.transition.phase == PREPARE  # gw2 has not said it stands by
    answer(ctl, 4.02, roles={"gw1": (ROLE_PRIMARY, 0), "gw2": (ROLE_STANDBY, 0)})
    ctl.step(m, True, device("gw1"), 4.02, 5.0)
    assert g.transition is not None and g.transition.phase == RELEASE  # no route from gw2's router needed


def test_planned_switch_moves_on_after_its_timeouts(files: dict) -> None:  # noqa: F811
    ctl = started(files)
    m = model(gw1=300, gw2=96)
    answer(ctl, 1.0)
    ctl.step(m, True, device("gw1"), 1.0, 2.0)
    answer(ctl, 4.0)
    step = ctl.step(m, True, device("gw1"), 4.0, 5.0)
    assert step.deadline == pytest.approx(5.0)  # STANDBY_TIMEOUT
    answer(ctl, 4.9)
    ctl.step(m, True, device("gw1"), 5.0, 5.0)
    assert ctl.groups[4].transition.phase == RELEASE  # type: ignore[union-attr]
    answer(ctl, 5.2)
    ctl.step(m, True, device("gw1"), 5.25, 5.0)
    assert holders(ctl) == {"gw2"}


def test_old_gateway_dying_mid_switch_makes_it_a_failure_switch(files: dict) -> None:  # noqa: F811
    ctl = started(files)
    m = model(gw1=300, gw2=96)
    answer(ctl, 1.0)
    ctl.step(m, True, device("gw1"), 1.0, 2.0)
    answer(ctl, 4.0)
    ctl.step(m, True, device("gw1"), 4.0, 5.0)
    answer(ctl, 4.2, only=("gw2",))  # gw1 falls silent
    ctl.step(m, True, device("gw1"), 4.4, 5.0)
    assert holders(ctl) == {"gw2"}
    done = ctl.written(True, 4.41)
    assert done[0].planned is False and done[0].outage == pytest.approx(0.41)


def test_the_check_failing_through_the_chosen_gateway_leaves_it_and_keeps_it_out(files: dict) -> None:  # noqa: F811
    ctl = started(files, check="10.200.0.1", check_interval=0.1, check_loss=3,
                 hysteresis={"hold": 3.0, "margin": 32})
    g = ctl.groups[4]
    now = 1.0
    # The checks go through gw1 and are answered.
    for _ in range(5):
        for family, _target, seq in ctl.checks_to_send(now):
            ctl.on_check_reply(family, seq, now + 0.01)
        answer(ctl, now)
        ctl.step(model(), True, device("gw1"), now, 2.0)
        now += 0.1
    assert g.check is not None and g.check.via == "gw1" and g.check.replies >= 4
    # Then they stop being answered while gw1's tunnel still answers probes.
    while holders(ctl) == {"gw1"} and now < 3.0:
        ctl.checks_to_send(now)
        answer(ctl, now)
        ctl.step(model(), True, device("gw1"), now, 2.0)
        now += 0.05
    done = ctl.written(True, now)
    assert [(d.switch.new, d.switch.cause) for d in done] == [("gw2", "check")]
    assert now - 1.5 < 0.6  # check_timeout 0.35 s after the last reply, a step or two more
    # gw1 stays out although it is better, until it has been fit for the hold (3 s), then comes back planned.
    while now < 4.3:
        answer(ctl, now)
        ctl.step(model(), True, device("gw2"), now, 2.0)
        assert ctl.groups[4].state.chosen == "gw2"
        now += 0.1
    while now < 9.0 and ctl.groups[4].state.chosen == "gw2":
        answer(ctl, now)
        ctl.step(model(), True, device("gw2"), now, 2.0)
        now += 0.1
    assert ctl.groups[4].state.chosen == "gw1" and ctl.groups[4].state.last_switch.cause == "better"  # type: ignore[union-attr]


def test_no_flapping_when_the_check_fails_everywhere(files: dict) -> None:  # noqa: F811
    """The target itself is down: after leaving gw1, gw2 fails too; then the target is suspect, not the paths.

    gw1 is taken back (planned, after the hold: it is better) and kept.
    """
    ctl = started(files, check="10.200.0.1", check_interval=0.1, check_loss=3)
    now, switches = 1.0, []
    while now < 10.0:
        ctl.checks_to_send(now)
        answer(ctl, now)
        ctl.step(model(), True, device(), now, 2.0)
        switches += [d.switch.new for d in ctl.written(True, now)]
        now += 0.05
    assert switches == ["gw2", "gw1"]
    g = ctl.groups[4]
    assert g.check is not None and g.check.suspect and not g.penalties


def test_desired_device_gives_steer_to_the_holder_only(files: dict) -> None:  # noqa: F811
    ctl = started(files)
    dev = ctl.desired()
    assert dev is not None
    by_key = {p.public_key: p for p in dev.peers}
    assert STEER in by_key[GW1.public].allowed_ips
    assert STEER not in by_key[GW2.public].allowed_ips
    assert ipaddress.ip_network("10.97.0.3/32") in by_key[GW2.public].allowed_ips
    assert all(p.persistent_keepalive == 10 for p in dev.peers)
    assert dev.private_key == ctl.config.keys.private


def test_each_family_has_its_own_choice(files: dict) -> None:  # noqa: F811
    v6 = ipaddress.ip_network("2001:db8::/32")
    ctl = controller(files, address=["10.98.0.1/32", "fd98::1/128"], steer=["0.0.0.0/0", "2001:db8::/32"])
    ctl.on_device(device(None), 0.0)
    for gw, probe in ctl.probes_to_send(0.0, 0.0, everyone=True):
        metrics = (0, 65535) if gw.name == "gw1" else (0, 0)  # gw1 has no IPv6 route onward
        ctl.on_ack(gw.name, Message("ack", gw.name, probe.seq, 0.0, (0, 0), (), metrics), 0.0)
    ctl.step(model(), True, device(None), 0.01, 1.0)
    assert ctl.chosen == {4: "gw1", 6: "gw2"}
    dev = ctl.desired()
    assert dev is not None
    owners = {p.public_key: p.allowed_ips for p in dev.peers}
    assert STEER in owners[GW1.public] and v6 in owners[GW2.public] and v6 not in owners[GW1.public]
    assert ctl.roles_for("gw1") == (ROLE_PRIMARY, ROLE_NONE) and ctl.roles_for("gw2") == (ROLE_NONE, ROLE_PRIMARY)


def test_the_first_choice_waits_for_every_gateway_to_answer_or_time_out(files: dict) -> None:  # noqa: F811
    """gw2 answers first; gw1 (better) is not given up on before its probe timeout."""
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    answer(ctl, 0.0, only=("gw2",))
    ctl.step(model(), True, device(None), 0.01, 1.0)
    assert ctl.groups[4].state.chosen is None
    answer(ctl, 0.1)
    ctl.step(model(), True, device(None), 0.11, 1.0)
    assert ctl.groups[4].state.chosen == "gw1"
    # A gateway that never answers is waited for only until its probe timeout.
    ctl = controller(files)
    ctl.on_device(device(None), 0.0)
    answer(ctl, 0.0, only=("gw2",))
    answer(ctl, 0.3, only=("gw2",))
    ctl.step(model(), True, device(None), 0.36, 1.0)
    assert ctl.groups[4].state.chosen == "gw2"


def test_a_check_that_fails_in_one_family_moves_that_family_only(files: dict) -> None:  # noqa: F811
    ctl = controller(files, address=["10.98.0.1/32", "fd98::1/128"], steer=["0.0.0.0/0", "2001:db8::/32"],
                     check=["10.200.0.1", "2001:db8::1"], check_interval=0.1)
    ctl.on_device(device(None), 0.0)
    now = 0.0
    while now < 3.0:
        for family, _target, seq in ctl.checks_to_send(now):
            if family == 4 or now < 1.0:  # IPv6 stops answering through gw1 after a second
                ctl.on_check_reply(family, seq, now + 0.01)
        for gw, probe in ctl.probes_to_send(now, 0.0, everyone=True):
            ctl.on_ack(gw.name, Message("ack", gw.name, probe.seq, 0.0, probe.roles, (), (0, 0)), now)
        ctl.step(model(), True, device(None), now, 2.0)
        ctl.written(True, now)
        now += 0.05
    assert ctl.chosen == {4: "gw1", 6: "gw2"}
    assert ctl.groups[6].state.last_switch.cause == "check"  # type: ignore[union-attr]
    assert "gw1" in ctl.groups[6].penalties and not ctl.groups[4].penalties


def test_a_gateway_behind_a_relay_is_given_a_moment_after_it_let_go(files: dict) -> None:  # noqa: F811
    """Its route is demoted in its tunnel, not through the mesh: the mesh needs RELEASE_SETTLE to move off it."""
    from meshctl.uplink.client import RELEASE_SETTLE, WRITE

    ctl = started(files)
    m = model(gw1=300, gw2=96)
    # gw1's own route now reaches us through a relay (refmetric 96): not our neighbour any more.
    m.apply(parse_line("change route 1 prefix 10.99.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
                       "metric 300 refmetric 96 via fe80::2 if wg1"))
    answer(ctl, 1.0)
    ctl.step(m, True, device("gw1"), 1.0, 2.0)
    answer(ctl, 4.0)
    ctl.step(m, True, device("gw1"), 4.0, 5.0)
    answer(ctl, 4.05, roles={"gw1": (ROLE_PRIMARY, 0), "gw2": (ROLE_STANDBY, 0)})
    m.apply(parse_line(CLIENT_ADDR.format(rid="03")))
    ctl.step(m, True, device("gw1"), 4.05, 5.0)
    answer(ctl, 4.1, roles={"gw1": (ROLE_NONE, 0), "gw2": (ROLE_STANDBY, 0)})
    step = ctl.step(m, True, device("gw1"), 4.1, 5.0)
    g = ctl.groups[4]
    assert g.transition is not None and g.transition.phase == RELEASE and holders(ctl) == {"gw1"}
    assert step.deadline == pytest.approx(4.1 + RELEASE_SETTLE)
    answer(ctl, 4.1 + RELEASE_SETTLE, roles={"gw1": (ROLE_NONE, 0), "gw2": (ROLE_STANDBY, 0)})
    ctl.step(m, True, device("gw1"), 4.1 + RELEASE_SETTLE, 5.0)
    assert g.transition is not None and g.transition.phase == WRITE and holders(ctl) == {"gw2"}
