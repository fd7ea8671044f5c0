"""Ask a running lab's babelds whether the mesh has converged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from meshctl.errors import MeshctlError
from meshctl.lab.plan import LabPlan
from meshctl.topology.model import TopologyModel
from meshctl.topology.snapshot import fetch_model


async def node_models(plan: LabPlan, timeout: float = 5.0) -> dict[str, TopologyModel]:
    """One fresh dump per node, taken concurrently."""
    models = await asyncio.gather(*(fetch_model(f"unix:{n.babel_socket}", timeout) for n in plan.nodes))
    return {n.name: m for n, m in zip(plan.nodes, models, strict=True)}


def convergence_problem(plan: LabPlan, models: dict[str, TopologyModel], best_path: bool = False) -> str | None:
    """None when every node has every neighbour up and an installed route to
    every other node's prefixes; otherwise the first thing still missing.

    ``best_path`` also wants each installed route to be the best one known.
    babeld moves to a better route only once its smoothed metric (4 s
    half-life) agrees, so that can take half a minute on a fresh mesh.
    """
    for node in plan.nodes:
        model = models[node.name]
        live = {k[1] for k, n in model.neighbours.items() if n.reachable}
        want = {t.ifname for t in node.tunnels}
        if live != want:
            return f"{node.name}: live neighbours on {sorted(live)}, want {sorted(want)}"
        installed = model.installed_routes()
        for other in plan.nodes:
            if other.name == node.name:
                continue
            for prefix in other.prefixes:
                route = installed.get(prefix)
                if route is None:
                    return f"{node.name}: no installed route to {prefix} ({other.name})"
                best = min(r.metric for r in model.routes_for(prefix))
                if best_path and route.metric > best:
                    return f"{node.name}: route to {prefix} not on its best path yet"
    return None


def wait_until(check: Callable[[], str | None], timeout: float, what: str, poll: float = 0.3) -> None:
    """Poll ``check`` (None = done, else what is missing) until ``timeout``, then raise naming both."""
    deadline = time.monotonic() + timeout
    while (problem := check()) is not None:
        if time.monotonic() > deadline:
            raise MeshctlError(f"{what} not reached within {timeout:g} s: {problem}")
        time.sleep(poll)


def check_converged(plan: LabPlan, best_path: bool = False) -> str | None:
    """Synchronous wrapper for scripts and tests."""
    return convergence_problem(plan, asyncio.run(node_models(plan)), best_path)
