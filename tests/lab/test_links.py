"""Issue #5 link automation: a tunnel meshctl makes itself, over two underlay paths (topologies/twopath.toml)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

from meshctl.node.sockets import query
from tests.lab.conftest import RunningLab


def link_status(lab: RunningLab, node: str) -> dict:
    return asyncio.run(query(lab.plan.node(node).control_socket, "status"))["links"][0]


def adjacency(lab: RunningLab, node: str) -> Callable[[], str | None]:
    """A check: ``node``'s babeld has a live neighbour on its managed tunnel."""
    ifname = lab.plan.node(node).managed[0].ifname

    def check() -> str | None:
        model = lab.model(node)
        live = [n for (_, i), n in model.neighbours.items() if i == ifname and n.reachable]
        return None if live else f"no live Babel neighbour on {ifname}"

    return check


def test_managed_tunnel_moves_to_the_second_endpoint_and_babel_keeps_the_adjacency(
    start_lab: Callable[[str], RunningLab],
) -> None:
    lab = start_lab("twopath")
    a, b = lab.plan.node("a"), lab.plan.node("b")
    took = lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency over the managed tunnel")
    print(f"managed tunnel created, attached to babeld and adjacent {took:.1f}s after lab up")
    first, second = a.managed[0].endpoints
    assert link_status(lab, "a")["endpoint"] == first and link_status(lab, "a")["babel"] is True
    # The interface is the daemon's: babeld was told about it at run time, not in its config file.
    assert a.managed[0].ifname not in a.babeld_conf

    # The first path dies: a's underlay veth on it goes down.
    veth = next(v.ifname for v in a.veths if v.address.network == next(
        vb.address.network for vb in b.veths if f"{vb.address.ip}:" in first))
    subprocess.run(["ip", "-n", a.namespace, "link", "set", veth, "down"], check=True, timeout=10)
    took = lab.wait_for(lambda: None if link_status(lab, "a")["endpoint"] == second else "still on the first",
                        30, "endpoint moved to the second path")
    took += lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency back over the second path")
    took_b = lab.wait_for(adjacency(lab, "b"), 30, "and on b's side")
    status, status_b = link_status(lab, "a"), link_status(lab, "b")
    print(f"first path down: tunnel on {status['endpoint']} and Babel adjacent again after {took:.1f}s "
          f"(dead_after 4 s); b's side {took_b:.1f}s later; moves by a {status['moves']}, by b {status_b['moves']}")
    # Both daemons watch the same silence; whichever moves first, WireGuard roams the other side
    # to the packets' new source, and that daemon respects it instead of moving again.
    assert status["moves"] + status_b["moves"] >= 1
    ping = subprocess.run(["ip", "netns", "exec", a.namespace, "ping", "-c", "2", "-W", "3", str(b.mesh4.ip)],
                          capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0, ping.stdout


def test_tunnels_are_retired_when_the_daemon_stops(start_lab: Callable[[str], RunningLab]) -> None:
    lab = start_lab("twopath")
    lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency over the managed tunnel")
    a = lab.plan.node("a")
    ifname = a.managed[0].ifname
    lab.lab.stop_daemon("a")

    def gone() -> str | None:
        out = subprocess.run(["ip", "-n", a.namespace, "link", "show", ifname], capture_output=True, text=True)
        return None if out.returncode != 0 else f"{ifname} still there"

    lab.wait_for(gone, 15, "the managed tunnel removed with its daemon")
    model = lab.model("a")  # babeld was told to let go of it: gone, or kept as down
    assert ifname not in model.interfaces or not model.interfaces[ifname].up


def test_a_tunnel_without_a_link_local_address_gets_one_back(start_lab: Callable[[str], RunningLab]) -> None:
    """babeld needs a link-local address (a kernel WireGuard device starts without one): meshctl restores it."""
    lab = start_lab("twopath")
    lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency over the managed tunnel")
    a = lab.plan.node("a")
    ifname = a.managed[0].ifname
    subprocess.run(["ip", "-n", a.namespace, "-6", "addr", "flush", "dev", ifname, "scope", "link"], check=True)

    def restored() -> str | None:
        out = subprocess.run(["ip", "-n", a.namespace, "-6", "addr", "show", "dev", ifname, "scope", "link"],
                             capture_output=True, text=True, check=True).stdout
        return None if "fe80::" in out else "no link-local address yet"

    lab.wait_for(restored, 15, "link-local address restored")
    lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency again")


def test_sighup_retires_and_creates_tunnels_and_refuses_a_broken_config(
    start_lab: Callable[[str], RunningLab],
) -> None:
    import signal

    lab = start_lab("twopath")
    lab.wait_for(adjacency(lab, "a"), 30, "Babel adjacency over the managed tunnel")
    a = lab.plan.node("a")
    ifname = a.managed[0].ifname
    with open(a.config_path) as f:
        original = f.read()

    def daemon_log() -> str:
        with open(f"{a.run_dir}/meshctl.log") as f:
            return f.read()

    def exists() -> bool:
        return subprocess.run(["ip", "-n", a.namespace, "link", "show", ifname], capture_output=True).returncode == 0

    # A broken config: refused, logged, nothing changes.
    with open(a.config_path, "w") as f:
        f.write(original.replace("keepalive = 1", 'keepalive = "often"'))
    lab.lab.signal_daemon("a", signal.SIGHUP)
    lab.wait_for(lambda: None if "reload refused" in daemon_log() else "not yet", 10, "reload refused")
    assert "links.keepalive" in daemon_log() and exists()

    # The neighbour goes from the config: its tunnel is retired.
    head, _, _ = original.partition("[links]")
    _, _, gossip = original.partition("[gossip]")
    with open(a.config_path, "w") as f:
        f.write(head + "[gossip]" + gossip)
    lab.lab.signal_daemon("a", signal.SIGHUP)
    lab.wait_for(lambda: None if not exists() else f"{ifname} still there", 15, "tunnel retired on reload")
    assert asyncio.run(query(a.control_socket, "status"))["links"] == []

    # And back: created again, attached to babeld, adjacent.
    with open(a.config_path, "w") as f:
        f.write(original)
    lab.lab.signal_daemon("a", signal.SIGHUP)
    lab.wait_for(adjacency(lab, "a"), 30, "adjacency after the neighbour came back")
    assert "links retired b, created none" in daemon_log()
    assert "links retired none, created b" in daemon_log()
