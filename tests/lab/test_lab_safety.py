"""The lab removes only what it recorded: never a namespace that merely carries one of its names."""

from __future__ import annotations

import os
import subprocess

from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab
from tests.lab.conftest import TOPOLOGIES, unique_tag


def test_lab_down_leaves_a_namespace_it_did_not_make() -> None:
    plan = make_plan(load_lab(os.path.join(TOPOLOGIES, "seed.toml")), unique_tag())
    theirs = plan.nodes[0].namespace  # TAG-client, made by hand: no lab state records it
    subprocess.run(["ip", "netns", "add", theirs], check=True)
    try:
        removed = Lab(plan).down()
        assert not any(theirs in line for line in removed), removed
        assert os.path.exists(f"/run/netns/{theirs}")
    finally:
        subprocess.run(["ip", "netns", "del", theirs], check=False)
