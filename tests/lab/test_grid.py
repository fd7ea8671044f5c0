"""The 4x4 grid: 16 babelds, 48 wireguard-go tunnels ends, routes up to 6 hops."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from tests.lab.conftest import RunningLab, converged


def test_grid_converges_and_every_dump_is_complete(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("grid4x4")
    took = lab.wait_for(converged(lab), 120, "grid convergence")
    print(f"grid4x4 converged {took:.1f}s after lab up")
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}
    for node in plan.nodes:
        out = subprocess.run(
            [sys.executable, "-m", "meshctl.cli", "topology", "dump", "--babel", lab.babel(node.name)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        dump = json.loads(out.stdout)
        neighbours = {n["router_id"] for n in dump["neighbours"] if n["reachable"]}
        assert neighbours == {plan.node(t.peer).router_id for t in node.tunnels}
        assert len(neighbours) in (2, 3, 4)
        # Every other router is known, each with an installed route to its prefixes.
        routers = {r["router_id"] for r in dump["routers"]}
        assert routers == ids - {node.router_id}
        installed = {r["prefix"] for r in dump["routes"] if r["installed"] and r["reachable"]}
        assert len(installed) == 2 * 15
    # Corner to corner: 6 hops through the mesh.
    far = plan.node("r44")
    ping = subprocess.run(
        ["ip", "netns", "exec", plan.node("r11").namespace, "ping", "-c", "2", "-W", "3", str(far.mesh4.ip)],
        capture_output=True, text=True, timeout=30,
    )
    assert ping.returncode == 0, ping.stdout
    trace = lab.model("r11").installed_route(far.mesh4.network)
    assert trace is not None and trace.metric >= 6 * 96
