"""Link-plane fail-over: a warm tunnel per path (babeld chooses) beside one tunnel whose endpoint moves.

Per path (topologies/threepath.toml, hellos every 0.05 s): a 10 ms ping
from a to b, the path carrying it cut at a, then the next one, then both
restored; the silence of each cut by the replies' own timestamps, and the
replies lost when the best path comes back.

One tunnel (topologies/twopath.toml): the same ping, the path the tunnel is
on cut; the silence until the endpoint has moved and traffic flows again.
At babeld's default 4 s hellos it is the silence rule (``dead_after``) that
moves it, as every one-tunnel move did before per-path tunnels; at 0.5 s
(the lab's) and 0.05 s, babeld declaring the neighbour dead does.

Needs root; every lab gets a unique tag and is removed.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import statistics
import time
from collections.abc import Callable

from meshctl.lab.check import wait_until
from meshctl.lab.linkpaths import link_status, paths_problem, replying, route_dev, set_path, silence
from meshctl.lab.ping import Pinger
from meshctl.lab.plan import make_plan
from meshctl.lab.runner import Lab
from meshctl.lab.spec import load_lab

TOPOLOGIES = os.path.join(os.path.dirname(__file__), "..", "topologies")
RUNS = 5


def _lab(name: str, **link_changes: object) -> Lab:
    spec = load_lab(os.path.join(TOPOLOGIES, f"{name}.toml"))
    links = (dataclasses.replace(spec.links[0], **link_changes), *spec.links[1:])  # type: ignore[arg-type]
    return Lab(make_plan(dataclasses.replace(spec, links=links), "b" + secrets.token_hex(2)))


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(lambda: None if check() else "not yet", timeout, what, poll=0.02)


def per_path(runs: int = RUNS) -> tuple[list[float], list[float], list[int]]:
    """Silences (s) of the first and second cut, and replies lost on restoring, over ``runs`` rounds."""
    lab = _lab("threepath")
    first_cuts, second_cuts, restore_lost = [], [], []
    try:
        lab.up()
        a, b = lab.plan.node("a"), lab.plan.node("b")
        link, target = a.managed[0], str(b.mesh4.ip)
        costly = link.path_ifnames[-1]
        wait_until(lambda: paths_problem(a, b) or replying(a, target), 60, "every path up")
        for _ in range(runs):
            pinger = Pinger(a.namespace, target, 0.01)
            time.sleep(0.5)
            first = link.path_ifnames.index(route_dev(a, target))
            t1 = set_path(a, link, first, "down")
            was = link.path_ifnames[first]
            _until(lambda: route_dev(a, target) not in ("", was), 10, "off the first path")  # noqa: B023 - used at once
            time.sleep(0.5)
            second = link.path_ifnames.index(route_dev(a, target))
            t2 = set_path(a, link, second, "down")
            _until(lambda: route_dev(a, target) == costly, 10, "on the costly path")
            time.sleep(0.5)
            t3 = set_path(a, link, first, "up")
            _until(lambda: route_dev(a, target) == was, 15, "back on the first path")  # noqa: B023
            time.sleep(0.5)
            result = pinger.stop()
            first_cuts.append(silence(result, t1, t2 - 0.3))
            second_cuts.append(silence(result, t2, t3 - 0.3))
            restore_lost.append(sum(1 for _, (after, _b) in result.lost_between().items() if (after or 0) >= t3 - 0.02))
            set_path(a, link, second, "up")
            wait_until(lambda: paths_problem(a, b), 30, "every path up again")
    finally:
        lab.down()
    return first_cuts, second_cuts, restore_lost


def one_tunnel(hello: float, runs: int = RUNS) -> list[float]:
    """Silences (s) when the path a single tunnel is on is cut, over ``runs`` cuts (alternating paths)."""
    lab = _lab("twopath", hello_interval=hello)
    silences = []
    try:
        lab.up()
        a, b = lab.plan.node("a"), lab.plan.node("b")
        link, target = a.managed[0], str(b.mesh4.ip)
        wait_until(lambda: replying(a, target), 60, "traffic over the tunnel")
        attempts = 0
        while len(silences) < runs and attempts < 3 * runs:
            attempts += 1
            # Settled: babeld adjacent over the tunnel at both ends, traffic flowing, and the status read since.
            wait_until(lambda: None if all(link_status(n)["paths"][0]["state"] == "up" for n in (a, b)) else "not up",
                       60, "adjacent")
            wait_until(lambda: replying(a, target), 60, "traffic over the tunnel", poll=0.05)
            time.sleep(max(1.5, 2 * hello))
            on = link.endpoints.index(link_status(a)["endpoint"])
            pinger = Pinger(a.namespace, target, 0.01)
            time.sleep(0.5)
            cut = set_path(a, link, on, "down")
            old = link.endpoints[on]
            _until(lambda: link_status(a)["endpoint"] != old, 60, "endpoint moved")  # noqa: B023 - used at once
            wait_until(lambda: replying(a, target), 60, "traffic again", poll=0.05)
            time.sleep(0.5)
            end = time.time()
            result = pinger.stop()
            set_path(a, link, on, "up")
            if any(t < cut for t in result.received_at.values()):  # else babeld was not done with the last cut
                silences.append(silence(result, cut, end))
    finally:
        lab.down()
    return silences


def _spread(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    v = sorted(values)
    return f"{v[0] * scale:.0f} / {statistics.median(v) * scale:.0f} / {v[-1] * scale:.0f} {unit}"


def run(runs: int = RUNS) -> list[tuple[str, ...]]:
    first, second, lost = per_path(runs)
    rows: list[tuple[str, ...]] = [
        ("per path, hello 0.05 s: cut the path carrying traffic (goal <= 300 ms)", _spread(first), f"{len(first)}"),
        ("per path: then cut the next one", _spread(second), f"{len(second)}"),
        ("per path: restore the best path, replies lost", f"{min(lost)} / {statistics.median(lost):g} / {max(lost)}",
         f"{len(lost)}"),
    ]
    for hello, why in ((4.0, "silence rule, dead_after 4 s (the scheme before)"), (0.5, "babeld's word"),
                       (0.05, "babeld's word")):
        rows.append((f"one tunnel, hello {hello:g} s: endpoint moved on {why}", _spread(one_tunnel(hello, runs)),
                     f"{runs}"))
    return rows
