"""Fixtures for tests that build real meshes: namespaces, veths, wireguard-go, babeld.

Every lab gets a fresh random tag (names must be unique machine-wide because
WireGuard's UAPI sockets are shared across namespaces) and is torn down in a
finalizer, so a failing test leaves nothing behind.  Outside CI the tests skip
when not root or when a tool is missing; under CI=true that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from meshctl.lab.check import check_converged
from meshctl.lab.plan import LabPlan, make_plan
from meshctl.lab.runner import Lab, LabState
from meshctl.lab.spec import load_lab
from meshctl.topology.model import TopologyModel
from meshctl.topology.snapshot import fetch_model

TOPOLOGIES = os.path.join(os.path.dirname(__file__), "..", "..", "topologies")
TOOLS = ("ip", "babeld", "wireguard-go")


def _prerequisite_problem() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"lab tests need {', '.join(missing)} (run ./bootstrap)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    problem = _prerequisite_problem()
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.lab)
            if problem and os.environ.get("CI") != "true":
                item.add_marker(pytest.mark.skip(reason=problem))


def unique_tag() -> str:
    """A tag no other lab on this machine uses."""
    while True:
        tag = "t" + secrets.token_hex(2)
        if not os.path.exists(os.path.join("/run/meshctl/lab", tag)):
            return tag


class RunningLab:
    """A lab that is up, with helpers to look at it."""

    def __init__(self, lab: Lab, state: LabState) -> None:
        self.lab = lab
        self.state = state

    @property
    def plan(self) -> LabPlan:
        return self.lab.plan

    def babel(self, node: str) -> str:
        return f"unix:{self.plan.node(node).babel_socket}"

    def model(self, node: str) -> TopologyModel:
        return asyncio.run(fetch_model(self.babel(node), 5.0))

    def wait_for(self, check: Callable[[], str | None], timeout: float, what: str) -> float:
        """Poll ``check`` (None = satisfied, else the reason) until ``timeout``; return seconds taken."""
        start = time.monotonic()
        reason = "never checked"
        while time.monotonic() - start < timeout:
            try:
                reason = check()
            except Exception as exc:  # babeld restarting, socket not there yet
                reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"{what} not reached within {timeout:g}s: {reason}")


def converged(running: RunningLab) -> Callable[[], str | None]:
    """A check: every node has all its neighbours and its best route to every other node's prefixes."""
    return lambda: check_converged(running.plan)


@pytest.fixture
def start_lab(request: pytest.FixtureRequest) -> Iterator[Callable[[str], RunningLab]]:
    """Bring up ``topologies/NAME.toml`` under a unique tag; always tear it down."""
    labs: list[Lab] = []

    def start(name: str) -> RunningLab:
        spec = load_lab(os.path.join(TOPOLOGIES, f"{name}.toml"))
        lab = Lab(make_plan(spec, unique_tag()))
        labs.append(lab)
        return RunningLab(lab, lab.up())

    yield start
    for lab in labs:
        lab.down()
