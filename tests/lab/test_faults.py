"""The fault suite: every fault that breaks a client's path, on topologies/faults.toml, judged by traffic.

One lab (a client, three gateways with one behind a relay, two paths to
gw1, one upstream; daemons supervised as the systemd unit runs them) takes
the faults one after the other, in this file's order.  Each pings every
10 ms from the client's uplink address and looks at the replies' own
timestamps.  The bounds asserted here say the traffic came back long before
the fault ended, which is what the broken cases missed (dead for the whole
fault, or for seconds after a restart); how fast it came back is
``make bench``'s to report.  Planned switches and a restarted client must
lose nothing; and once a fault settled, no gateway but the chosen one may
still announce the client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from meshctl.lab.faults import PLANNED, FaultResult, Faults
from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from tests.lab.conftest import TOPOLOGIES, unique_tag

BOUND = 1.5  # seconds: far below every fault's length, far above what any of them costs


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    lab = Lab(make_plan(load_lab(os.path.join(TOPOLOGIES, "faults.toml")), unique_tag()))
    try:
        lab.up()
        f = Faults(lab, ["gw1", "gw2", "gw3"], "gw1")
        f.ready(90)
        yield f
    finally:
        lab.down()


def show(r: FaultResult) -> None:
    back = f", back: {r.back_lost} lost, {r.back_silence:.3f} s" if r.back_lost is not None else ""
    print(f"{r.fault}: silence {r.silence:.3f} s, {r.lost} of {r.sent} lost, to {r.switched_to}{back}")


def test_the_chosen_gateway_loses_its_upstream(faults: Faults) -> None:
    """The tunnel still answers; only end-to-end health (its metric onward, the check) shows the path is dead."""
    r = faults.upstream_loss()
    show(r)
    assert r.switched_to in ("gw2", "gw3")
    assert r.silence < BOUND
    assert r.back_lost == 0, "the planned switch back to gw1 lost replies"
    assert not r.stale


def test_the_chosen_gateways_meshctl_is_killed_and_restarted(faults: Faults) -> None:
    """SIGKILL, restart 2 s later: its watchdog demotes its routes at once; nothing announces for a dead daemon."""
    r = faults.gateway_meshctl_kill()
    show(r)
    assert r.silence < BOUND
    assert r.back_lost == 0
    assert not r.stale


def test_the_clients_meshctl_is_killed_and_restarted(faults: Faults) -> None:
    """The restarted client adopts what its WireGuard device holds; the gateway kept announcing it meanwhile."""
    r = faults.client_meshctl_restart()
    show(r)
    assert r.lost == 0
    assert r.switched_to is None
    assert not r.stale


@pytest.mark.parametrize("to", ["gw2", "gw3"])
def test_planned_switches_lose_nothing(faults: Faults, to: str) -> None:
    """To a gateway one hop away and to one behind the relay (its tunnel through the mesh), and back."""
    r = faults.planned(to, *PLANNED[to])
    show(r)
    assert r.lost == 0 and r.back_lost == 0
    assert not r.stale


def test_the_chosen_gateway_loses_power(faults: Faults) -> None:
    r = faults.power_loss()
    show(r)
    assert r.switched_to not in (None, "gw1")
    assert r.silence < BOUND
    assert not r.stale


def test_the_chosen_gateways_babeld_is_killed(faults: Faults) -> None:
    """No state file: restarted, its routes may be refused for minutes; traffic stays on another gateway."""
    was = faults.best
    r = faults.gateway_babeld_kill()
    show(r)
    assert r.switched_to not in (None, was)
    assert r.silence < BOUND
    assert not r.stale
