"""The faults that break a client's path, injected into a running lab, judged by what traffic saw.

Each fault starts from a lab whose client sends through its best gateway
(:func:`ready`), pings every 10 ms from the client's uplink address to an
address behind the upstream, injects the fault, waits until traffic flows
again, and returns the ping's result: its longest silence between replies by
their own timestamps is the outage.  Faults that recover (a restored link, a
restarted daemon) also measure the planned switch back to the better
gateway, which must lose nothing.  Used by the fault tests (tests/lab) and by
``make bench``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshctl.babel.connection import Connection
from meshctl.babel.endpoint import parse_endpoint
from meshctl.errors import LabError
from meshctl.lab.check import check_converged
from meshctl.lab.ping import Pinger
from meshctl.lab.plan import MESHCTL_RTPROTO, MESHCTL_STANDBY_RTPROTO, LabPlan
from meshctl.lab.runner import RESTART_SEC, Lab
from meshctl.node.sockets import query_status
from meshctl.topology.snapshot import fetch_model

TARGET = "10.200.0.7"  # inside the upstream's 10.200.0.0/24
INTERVAL = 0.01
Check = Callable[[], str | None]


@dataclass(frozen=True)
class FaultResult:
    """What the traffic saw during one fault (and the switch back, where there is one)."""

    fault: str
    silence: float  # longest silence between replies around the fault, by their own timestamps
    lost: int  # replies lost around the fault
    sent: int
    switched_to: str | None  # where the traffic went
    back_lost: int | None = None  # replies lost in the planned switch back (None: no switch back)
    back_silence: float | None = None
    stale: tuple[str, ...] = ()  # announcements left where none should be, once it settled


def wait(check: Check, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``check`` until it says None; LabError with its last reason after ``timeout`` seconds."""
    start = time.monotonic()
    reason: str | None = "never checked"
    while time.monotonic() - start < timeout:
        try:
            reason = check()
        except Exception as exc:  # a socket not there yet, a daemon restarting
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return time.monotonic() - start
        time.sleep(step)
    raise LabError(f"{what} not reached within {timeout:g} s: {reason}")


def status(plan: LabPlan, node: str) -> dict:
    return asyncio.run(query_status(plan.node(node).control_socket, 2.0))


def uplink(plan: LabPlan, client: str = "client") -> dict:
    return status(plan, client)["uplinks"][0]


def client_address(plan: LabPlan, client: str = "client") -> str:
    up = plan.node(client).uplink
    assert up is not None
    return str(up.address.ip)


def return_path(plan: LabPlan, client: str = "client", upstream: str = "upstream") -> str | None:
    """Which node announces the upstream's installed route to the client's uplink address (its originator:
    a gateway may sit behind relays, so the upstream's next hop need not be the gateway)."""
    model = asyncio.run(fetch_model(f"unix:{plan.node(upstream).babel_socket}", 3.0))
    route = model.installed_route(ipaddress.ip_network(f"{client_address(plan, client)}/32"))
    if route is None:
        return None
    return next((n.name for n in plan.nodes if n.router_id == route.router_id), None)


def announcements(plan: LabPlan, node: str, address: str) -> list[str]:
    """The routes meshctl installed on ``node`` for ``address`` (protocols 152 and 153)."""
    out = []
    for proto in (MESHCTL_RTPROTO, MESHCTL_STANDBY_RTPROTO):
        text = subprocess.run(["ip", "-n", plan.node(node).namespace, "route", "show", "proto", str(proto)],
                              capture_output=True, text=True, timeout=10).stdout
        out += [f"proto {proto}: {line.strip()}" for line in text.splitlines()
                if line.split()[:1] in ([address], [f"{address}/32"])]
    return out


def stale_announcements(plan: LabPlan, gateways: list[str], chosen: str, client: str = "client") -> list[str]:
    """Announcements of the client's address on gateways other than the chosen one, or none on the chosen one."""
    address = client_address(plan, client)
    stale = []
    for gw in gateways:
        try:
            found = announcements(plan, gw, address)
        except subprocess.SubprocessError:
            continue
        if gw != chosen:
            stale += [f"{gw}: {line}" for line in found]
        elif not any(line.startswith(f"proto {MESHCTL_RTPROTO}") and "via" not in line for line in found):
            stale.append(f"{gw}: chosen but does not announce {address} into its tunnel ({found})")
    return stale


def ready(plan: LabPlan, gateway: str, client: str = "client", upstream: str = "upstream",
          converged: bool = True, dead: frozenset[str] = frozenset()) -> Check:
    """Converged (unless a node is dead); ``gateway`` chosen and announcing the client; every candidate warm or
    plainly dead; settled."""

    def check() -> str | None:
        problem = check_converged(plan) if converged else None
        if problem:
            return problem
        up = uplink(plan, client)
        if up["chosen"] != gateway:
            return f"chosen {up['chosen']}, not {gateway}"
        # Every backup warm: a lab's backups answer only once WireGuard's handshake retry (5 s) went through,
        # and a fault injected before that finds no warm gateway to move to.
        if any(c["state"] != "warm" for c in up["candidates"] if c["name"] != gateway and c["name"] not in dead):
            return f"states {({c['name']: c['state'] for c in up['candidates']})}"
        fam = next(iter(up["families"].values()))
        if fam["switching"] or fam["holder"] != gateway:
            return "a switch is under way"
        if (up["last_switch"] or {}).get("ago_s", 0) < 1.0:
            return "switched less than a second ago"
        if fam["check"] is not None and fam["check"]["state"] != "ok":
            return f"check {fam['check']['state']}"
        if return_path(plan, client, upstream) != gateway:
            return f"return path not via {gateway} yet"
        return None

    return check


def moved(plan: LabPlan, away_from: str, client: str = "client", upstream: str = "upstream") -> Check:
    """The client sends through another gateway, and the upstream returns through that one."""

    def check() -> str | None:
        up = uplink(plan, client)
        now = up["chosen"]
        if now in (None, away_from):
            return f"still on {now}"
        fam = next(iter(up["families"].values()))
        if fam["switching"] or fam["holder"] != now:
            return "a switch is under way"
        if return_path(plan, client, upstream) != now:
            return f"return path not via {now}"
        return None

    return check


def ping(plan: LabPlan, client: str = "client") -> Pinger:
    return Pinger(plan.node(client).namespace, TARGET, INTERVAL, source=client_address(plan, client))


def set_rxcost(plan: LabPlan, node: str, neighbour: str, cost: int) -> None:
    """Change a link's cost as babeld sees it from ``neighbour`` (babeld's link cost is the far end's rxcost).

    The interface is flushed and re-added with its babeld.conf line and the
    new rxcost: babeld 1.12 applies no new parameters to an interface it has.
    """
    tunnel = next(t for t in plan.node(node).tunnels if t.peer == neighbour)
    line = next(x for x in plan.node(node).babeld_conf.splitlines() if x.startswith(f"interface {tunnel.ifname} "))
    words = line.split()
    if "rxcost" in words:
        del words[words.index("rxcost"):words.index("rxcost") + 2]

    async def run() -> None:
        conn = await Connection.open(parse_endpoint(f"unix:{plan.node(node).babel_socket}"))
        try:
            await conn.command(f"flush interface {tunnel.ifname}")
            await conn.command(" ".join([*words, "rxcost", str(cost)]))
        finally:
            await conn.wait_closed()

    asyncio.run(run())


#: (node, neighbour, rxcost) changes that make a planned switch happen on topologies/faults.toml, each
#: on links that do not carry the traffic at that moment (a babeld interface flush on an active link
#: costs that link's traffic by itself).  gw2: 160+96 -> 32+96, then back.  gw3 (behind the relay, its
#: uplink tunnel through the mesh): 96+96+96 -> 96+16+16; back by making gw1's own path cheaper
#: (96+96 -> 16+16), since every link of gw3's path then carries the traffic.
Costs = tuple[tuple[str, str, int], ...]
PLANNED: dict[str, tuple[Costs, Costs]] = {
    "gw2": ((("gw2", "client", 32),), (("gw2", "client", 160),)),
    "gw3": ((("gw3", "relay", 16), ("upstream", "gw3", 16)), (("gw1", "client", 16), ("upstream", "gw1", 16))),
}


def set_costs(plan: LabPlan, changes: Costs) -> None:
    for node, neighbour, cost in changes:
        set_rxcost(plan, node, neighbour, cost)


class Faults:
    """One lab (topologies/faults.toml or another with a client, gateways and an upstream), fault after fault."""

    def __init__(self, lab: Lab, gateways: list[str], best: str, client: str = "client", upstream: str = "upstream"):
        self.lab, self.plan = lab, lab.plan
        self.gateways, self.best, self.client, self.upstream = gateways, best, client, upstream
        self.dead: set[str] = set()  # nodes that lost power: the mesh is no longer whole

    def _ready(self, gateway: str) -> Check:
        return ready(self.plan, gateway, self.client, self.upstream, converged=not self.dead,
                     dead=frozenset(self.dead))

    def ready(self, timeout: float = 60.0) -> None:
        wait(self._ready(self.best), timeout, f"client on {self.best}, settled")

    def _around(self, inject: Callable[[], None], recover: Callable[[], None] | None, fault: str,
                back: bool) -> FaultResult:
        """Ping; inject; wait until traffic moved; recover (and wait for the switch back); measure."""
        self.ready()
        pinger = ping(self.plan, self.client)
        try:
            time.sleep(1.0)
            t0 = time.time()
            inject()
            to = None
            try:
                wait(moved(self.plan, self.best, self.client, self.upstream), 30, f"{fault}: traffic moved")
                to = uplink(self.plan, self.client)["chosen"]
            except LabError:
                if back:
                    raise
            time.sleep(1.0)
            t1 = time.time()
            if recover is not None:
                recover()
            if back:
                wait(self._ready(self.best), 60, f"{fault}: back on {self.best}")
            time.sleep(1.0)
        finally:
            result = pinger.stop()
        t2 = time.time()
        stale = self._stale([g for g in self.gateways if g not in self.dead], uplink(self.plan, self.client)["chosen"])
        return FaultResult(
            fault, result.silence_between(t0, t1), result.lost_in(t0, t1), result.sent, to,
            result.lost_in(t1, t2) if back else None, result.silence_between(t1, t2) if back else None,
            tuple(stale),
        )

    def _stale(self, gateways: list[str], chosen: str) -> list[str]:
        """Announcements left where none should be, once handed-off routes are gone (waits up to 15 s)."""
        try:
            wait(lambda: "; ".join(stale_announcements(self.plan, gateways, chosen, self.client)) or None, 15.0,
                 "no stale announcement", step=0.5)
        except LabError:
            return stale_announcements(self.plan, gateways, chosen, self.client)
        return []

    def upstream_loss(self) -> FaultResult:
        """The chosen gateway loses its upstream link and stays up; later the link returns."""
        gw = self.best
        return self._around(lambda: self.lab.set_link(gw, self.upstream, False),
                            lambda: self.lab.set_link(gw, self.upstream, True), "upstream loss", back=True)

    def gateway_meshctl_kill(self) -> FaultResult:
        """The chosen gateway's meshctl is SIGKILLed; its supervisor restarts it RESTART_SEC later."""
        def kill() -> None:
            self.lab.kill_daemon(self.best)

        return self._around(kill, None, "gateway meshctl SIGKILL", back=True)

    def gateway_babeld_kill(self) -> FaultResult:
        """The chosen gateway's babeld is SIGKILLed (no state file written) and restarted RESTART_SEC later.

        No switch back is awaited: a babeld restarted without its state file
        starts from an older sequence number than its neighbours remember,
        and they may refuse its routes for minutes (babeld's own behaviour).
        Traffic must keep flowing through another gateway meanwhile.
        """
        gw = self.best

        def recover() -> None:
            time.sleep(max(0.0, RESTART_SEC - 1.0))  # _around already waited a second
            self.lab.start_babeld(gw)

        return self._around(lambda: self.lab.kill_babeld(gw), recover, "gateway babeld SIGKILL", back=False)

    def client_meshctl_restart(self) -> FaultResult:
        """The client's meshctl is SIGKILLed; restarted RESTART_SEC later, it adopts what the device holds."""
        self.ready()
        pinger = ping(self.plan, self.client)
        switches = uplink(self.plan, self.client)["switches"]
        try:
            time.sleep(1.0)
            t0 = time.time()
            old = self.lab.kill_daemon(self.client)
            wait(lambda: None if (self.lab.daemon_pid(self.client) or old) != old else "not restarted", 10,
                 "client meshctl restarted")
            wait(lambda: None if status(self.plan, self.client)["babel"]["synced"] else "not synced", 10,
                 "restarted client synced")
            time.sleep(2.0)
            t1 = time.time()
        finally:
            result = pinger.stop()
        up = uplink(self.plan, self.client)
        moved_to = up["chosen"] if up["chosen"] != self.best or up["switches"] != 1 else None
        del switches
        stale = self._stale(self.gateways, self.best)
        return FaultResult("client meshctl SIGKILL + restart", result.silence_between(t0, t1),
                           result.lost_in(t0, t1), result.sent, moved_to, None, None, tuple(stale))

    def planned(self, to: str, improve: Costs, undo: Costs) -> FaultResult:
        """``improve`` makes ``to`` better by more than the margin: a planned switch there; ``undo``, and back."""
        self.ready()
        pinger = ping(self.plan, self.client)
        try:
            time.sleep(1.0)
            t0 = time.time()
            set_costs(self.plan, improve)
            wait(self._ready(to), 30, f"planned switch to {to}")
            t1 = time.time()
            set_costs(self.plan, undo)
            wait(self._ready(self.best), 30, f"planned switch back to {self.best}")
            time.sleep(0.5)
        finally:
            result = pinger.stop()
        t2 = time.time()
        return FaultResult(f"planned switch to {to} and back", result.silence_between(t0, t1), result.lost_in(t0, t1),
                           result.sent, to, result.lost_in(t1, t2), result.silence_between(t1, t2),
                           tuple(self._stale(self.gateways, self.best)))

    def power_loss(self) -> FaultResult:
        """The chosen gateway loses power: links down, every process of it killed.  It does not come back:
        the next best gateway becomes :attr:`best` for the faults after it."""
        self.ready()
        pinger = ping(self.plan, self.client)
        try:
            time.sleep(1.0)
            t0 = time.time()
            self.lab.fail_node(self.best)
            wait(moved(self.plan, self.best, self.client, self.upstream), 30, "power loss: traffic moved")
            to = uplink(self.plan, self.client)["chosen"]
            time.sleep(1.0)
        finally:
            result = pinger.stop()
        t1 = time.time()
        self.dead.add(self.best)
        self.best = to
        stale = self._stale([g for g in self.gateways if g not in self.dead], to)
        return FaultResult("gateway power loss", result.silence_between(t0, t1), result.lost_in(t0, t1),
                           result.sent, to, None, None, tuple(stale))
