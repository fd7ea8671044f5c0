"""The asyncio side of one uplink: probes, checks, WireGuard reads and writes.

Decisions and the make-before-break sequence are
:class:`meshctl.uplink.client.UplinkController`'s; this layer reads, feeds it
with the clock, carries out what it returns, and re-arms one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

from meshctl.beat import answers_after, beat_at_or_after
from meshctl.config import UplinkConfig
from meshctl.counters import Counters
from meshctl.topology.model import MeshView
from meshctl.udp import BoundSocket, ifindex
from meshctl.uplink.client import Done, UplinkController, host_prefix
from meshctl.uplink.control import ROLE_NAMES, ControlError, decode, encode
from meshctl.uplink.icmp import echo_reply_seq, echo_request
from meshctl.uplink.policy import FAILURE_CAUSES
from meshctl.wireguard.backend import Backend
from meshctl.wireguard.diff import apply_to, diff
from meshctl.wireguard.state import Device
from meshctl.wireguard.uapi import UapiError

log = logging.getLogger("meshctl.daemon")

DEVICE_POLL = 1.0  # seconds between WireGuard reads (handshake ages, restarts)


def _summary(values: Any) -> dict[str, Any]:
    """Count, median and p99 in milliseconds (no statistics module: it costs a daemon 2 ms and 0.5 MB to import)."""
    data = sorted(values)
    if not data:
        return {"count": 0, "median": None, "p99": None}
    n = len(data)
    median = data[n // 2] if n % 2 else (data[n // 2 - 1] + data[n // 2]) / 2
    return {
        "count": n,
        "median": round(median * 1000, 3),
        "p99": round(data[min(n - 1, int(n * 0.99))] * 1000, 3),
    }


class CheckSocket:
    """A raw ICMP socket for one family's end-to-end check, sending from the client's uplink address.

    Not tied to the uplink device: the reply may come back over a Babel link
    (a standby return path through the mesh) as well as through the tunnel.
    """

    def __init__(self, family: int, source: str, ident: int) -> None:
        self.family = family
        self.ident = ident
        if family == 4:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        else:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.sock.setblocking(False)
        self.sock.bind((source, 0))

    async def send(self, target: str, seq: int) -> None:
        with contextlib.suppress(OSError):  # no route yet, device gone: the check counts it as unanswered
            await asyncio.get_running_loop().sock_sendto(self.sock, echo_request(self.family, self.ident, seq),
                                                         (target, 0))

    async def recv(self) -> tuple[int | None, str]:
        data, addr = await asyncio.get_running_loop().sock_recvfrom(self.sock, 2048)
        return echo_reply_seq(self.family, data, self.ident), str(addr[0])

    def close(self) -> None:
        self.sock.close()


class UplinkRunner:
    """Drives one :class:`UplinkController`."""

    def __init__(self, config: UplinkConfig, node: str, view: MeshView, backend: Backend, counters: Counters,
                 on_reaction: Callable[[str, float], None] | None = None) -> None:
        self.config = config
        self.view = view
        self.backend = backend
        self.counters = counters
        self.on_reaction = on_reaction  # the metrics histogram, fed as switches happen
        self.ctl = UplinkController(config, node, time.time_ns())
        self.device: Device | None = None
        self.write_lock = asyncio.Lock()
        self.evaluate_lock = asyncio.Lock()
        # One control socket per family the gateways' control addresses use, from our address of that family.
        sources = {a.version: str(a.ip) for a in config.addresses}
        families = sorted({g.control.version for g in config.gateways})
        self.socks = {f: BoundSocket(sources[f], 0, config.interface, f"uplink {config.interface}", self._on_datagram)
                      for f in families if f in sources}
        # Made once: a probe goes out 10 to 40 times a second.
        self._to = {g.name: (str(g.control), config.control_port) for g in config.gateways}
        self._by_addr = {str(g.control): g.name for g in config.gateways}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alive: dict[str, bool | None] = {}  # each gateway's liveness as last logged
        self.checks: dict[int, CheckSocket] = {}
        self._warned_own: set[int] = set()  # families whose missing own announcement was logged
        self._routed_index: int | None = None  # the device whose IPv6 control routes are in place
        self._trigger: float | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._silence: asyncio.TimerHandle | None = None  # when a gateway that answers will have been silent too long
        self.device_ok = False

    @property
    def name(self) -> str:
        return self.config.interface

    @property
    def sock(self) -> BoundSocket:
        """The control socket of the first family (the lab and tests use one)."""
        return next(iter(self.socks.values()))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sock in self.socks.values():
            await sock.open()
        ident = (os.getpid() ^ zlib.crc32(self.name.encode())) & 0xFFFF
        for family in self.ctl.groups:
            if self.ctl.groups[family].check is not None:
                address = self.ctl.groups[family].address
                assert address is not None  # check-config refuses a family without an address
                self.checks[family] = CheckSocket(family, str(address.ip), ident)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._device_loop())
                tg.create_task(self._probe_loop())
                if self.checks:
                    tg.create_task(self._check_loop())
                for check in self.checks.values():
                    tg.create_task(self._check_recv_loop(check))
        finally:
            for check in self.checks.values():
                check.close()
            for sock in self.socks.values():
                sock.close()

    # -- evaluation -------------------------------------------------------------

    def poke(self, trigger: float | None = None) -> None:
        """Something changed: evaluate soon (coalesced), remembering the earliest trigger."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        trigger = loop.time() if trigger is None else trigger
        if self._trigger is None or trigger < self._trigger:
            self._trigger = trigger
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(lambda: asyncio.ensure_future(self._evaluate()))

    async def _evaluate(self) -> None:
        self._scheduled = False
        async with self.evaluate_lock:
            trigger, self._trigger = self._trigger, None
            loop = asyncio.get_running_loop()
            phases = self._phases()
            step = self.ctl.step(self.view.model, self.view.synced, self.device, loop.time(), time.time(), trigger)
            self._log_phases(phases)
            self._check_own_announcement()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if step.deadline is not None:
                self._timer = loop.call_at(step.deadline, self.poke)
            if step.probe_now:
                self._send_probes(everyone=True)
            if self._switching():
                self._read_now()  # a switch under way waits for acks: read them as they come
            done = await self.converge()
            if done:
                self._send_probes(everyone=True)  # tell the new gateway at once (and the old one, if not told yet)

    def _check_own_announcement(self) -> None:
        """Say once, loudly, when babeld does not announce our own address: fail-over then loses replies."""
        if not self.view.synced:
            return
        for family, g in self.ctl.groups.items():
            if family in self._warned_own or g.address is None or self.ctl.own_announcement(family, self.view.model):
                continue
            self._warned_own.add(family)
            addr = f"{g.address.ip}/{g.address.max_prefixlen}"
            log.warning("uplink %s: babeld does not announce our address %s itself, so while a gateway fails or a "
                        "switch is under way the mesh may have no way back to us; add 'redistribute local ip %s "
                        "allow' to babeld.conf, before its deny lines", self.name, addr, addr)

    def _phases(self) -> dict[int, tuple[str, str, str] | None]:
        return {f: (g.transition.phase, g.transition.switch.old or "", g.transition.switch.new) if g.transition else None
                for f, g in self.ctl.groups.items()}

    def _log_phases(self, before: dict[int, tuple[str, str, str] | None]) -> None:
        """One INFO line per step of a planned switch: what it waited for, so a slow or aborted one can be read."""
        for family, was in before.items():
            now = self._phases()[family]
            if now == was or now is None:
                continue
            phase, old, new = now
            what = {"prepare": f"asking {new} to stand by (a return path through the mesh), {old} keeps the prefixes",
                    "release": f"{new} stands by; asking {old} to let go",
                    "write": f"moving the prefixes from {old} to {new}"}[phase]
            log.info("uplink %s: planned switch %s -> %s: %s", self.name, old, new, what,
                     extra={"event": "switch-phase", "uplink": self.name, "family": family, "phase": phase,
                            "old": old, "new": new})

    async def converge(self) -> list[Done]:
        """Bring the device to the desired state in one write; log the switches that write completes."""
        async with self.write_lock:
            desired = self.ctl.desired()
            if desired is None:
                return []  # the device was never read: nothing to adopt yet, nothing written blind
            request = diff(desired, self.device)
            ok = True
            if request is not None:
                try:
                    await self.backend.write(self.name, request)
                except UapiError as exc:
                    self.counters.backend_errors += 1
                    self.device_ok = False
                    ok = False
                    log.error("uplink %s: WireGuard write failed: %s", self.name, exc)
                else:
                    # What WireGuard now holds, without waiting for the next read.
                    self.device = apply_to(self.device or Device(self.name), request)
            done = self.ctl.written(ok, asyncio.get_running_loop().time())
        for d in done:
            if d.ok and self.on_reaction is not None:
                self.on_reaction(self.name, d.reaction)
            self._log_switch(d)
        return done

    def _log_switch(self, d: Done) -> None:
        """The decision line: what changed and why, one line, with the same facts as fields for JSON logs.

        WARNING when the old gateway failed (someone may want to know why),
        INFO for an initial choice or a planned move to a better gateway,
        ERROR when the write that should carry it out failed.
        """
        switch = d.switch
        level = logging.ERROR if not d.ok else logging.WARNING if switch.cause in FAILURE_CAUSES else logging.INFO
        how = "make-before-break, " if d.planned else ""
        if d.outage is not None:
            how += f"outage at most {d.outage * 1000:.0f} ms since {switch.old}'s last probe answer, "
        result = "done" if d.ok else "FAILED"
        family = f" (IPv{d.family})" if len(self.ctl.groups) > 1 else ""
        log.log(
            level,
            "uplink %s%s: %s -> %s, %s (%sWireGuard write %s %.1f ms after the trigger)",
            self.name, family, switch.old or "none", switch.new, switch.reason, how, result, d.reaction * 1000,
            extra={
                "event": "switch", "uplink": self.name, "family": d.family, "old": switch.old, "new": switch.new,
                "cause": switch.cause, "reason": switch.reason, "old_metric": switch.old_metric,
                "new_metric": switch.new_metric, "planned": d.planned, "write_ok": d.ok,
                "reaction_ms": round(d.reaction * 1000, 3),
                "prepare_ms": round(d.prepare * 1000, 1) if d.prepare is not None else None,
                "outage_ms": round(d.outage * 1000, 1) if d.outage is not None else None,
            },
        )

    # -- loops --------------------------------------------------------------------

    async def _device_loop(self) -> None:
        """Read WireGuard state; the first read adopts what the device holds; drift is re-applied."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                device = await self.backend.read(self.name)
            except UapiError as exc:
                if self.device_ok:
                    log.error("uplink %s: WireGuard device unreadable (%s); will re-apply when it is back", self.name, exc)
                self.device_ok = False
                self.device = None
            else:
                if not self.device_ok:
                    log.info("uplink %s: WireGuard device found; applying desired state", self.name)
                self.device = device
                self.device_ok = True
                adopted = self.ctl.on_device(device, loop.time())
                if adopted is not None:
                    log.info("uplink %s: %s", self.name, adopted.reason,
                             extra={"event": "switch", "uplink": self.name, "old": None, "new": adopted.new,
                                    "cause": "adopted", "reason": adopted.reason})
                index = ifindex(self.name)  # once for both: each look-up is three system calls
                for sock in self.socks.values():
                    await sock.check(index)
                await self._control_routes(index)
                self.poke()  # handshake ages moved; a drifted device is re-applied by the evaluation
            await asyncio.sleep(DEVICE_POLL)

    async def _control_routes(self, index: int | None) -> None:
        """IPv6 control addresses need a route through the uplink (see uplink.routes.control_routes)."""
        if index is None or index == self._routed_index:
            return
        v6 = tuple(host_prefix(g.control) for g in self.config.gateways if g.control.version == 6)
        if not v6:
            return
        from meshctl.uplink.routes import RouteError, control_routes  # pyroute2: only when IPv6 control needs it

        try:
            await control_routes(v6, self.name)
        except RouteError as exc:
            log.error("uplink %s: %s", self.name, exc)
            return
        self._routed_index = index

    def _send_probes(self, everyone: bool = False, beat: float | None = None) -> None:
        loop = self._loop
        assert loop is not None
        secret = self.config.secret
        sent = False
        for gw, message in self.ctl.probes_to_send(loop.time(), time.time(), everyone, beat):
            sock = self.socks.get(gw.control.version)
            if sock is not None:
                sock.send(encode(message, secret), self._to[gw.name])
                sent = True
        if sent and beat is None and everyone:
            # A decision's own probes, off the beat: their answers are read as soon as they should be in,
            # not at the next tick (a held answer that says something new is a decision made late).
            loop.call_later(answers_after(self.config.probe_interval), self._drain)

    def _switching(self) -> bool:
        return any(g.transition is not None for g in self.ctl.groups.values())

    def _drain(self) -> None:
        for sock in self.socks.values():
            sock.drain()
        self._watch_silence()

    def _watch_silence(self) -> None:
        """Judge liveness when a gateway's silence runs out, not at the beat after it (up to a beat later).

        Answers move the deadline on before it comes, so while gateways answer the timer never fires: no
        wake-up is added, only a timer handle re-armed once per probe round.
        """
        loop = self._loop
        assert loop is not None
        at = self.ctl.silent_at(loop.time())
        timer = self._silence
        if timer is not None:
            if at is not None and timer.when() == at:
                return
            timer.cancel()
        self._silence = loop.call_at(at, self._silence_over) if at is not None else None

    def _silence_over(self) -> None:
        self._silence = None
        self._drain()  # an answer still held in the socket counts (by its arrival stamp); re-arms for the next
        self._judge_liveness(asyncio.get_running_loop().time())

    def _read_now(self) -> None:
        for sock in self.socks.values():
            sock.live()

    def _liveness(self, now: float) -> dict[str, bool | None]:
        return {g.name: self.ctl.alive(g.name, now) for g in self.config.gateways}

    async def _probe_loop(self) -> None:
        """Probes on a timer callback rather than a task that sleeps: the probe pace (10 to 40 wake-ups a
        second) is the daemon's busiest, and a callback costs the loop one handle, not a future and a task step."""
        loop = self._loop
        assert loop is not None
        failed: asyncio.Future[None] = loop.create_future()
        timer: asyncio.TimerHandle | None = None

        period = self.config.probe_interval
        after = answers_after(period)
        drain: asyncio.TimerHandle | None = None

        def tick(beat: float | None = None) -> None:
            nonlocal timer, drain
            try:
                self._drain()  # answers that came after the last drain: liveness is judged on all of them
                now = loop.time()
                if beat is not None:
                    self._judge_liveness(now)
                self._send_probes(beat=beat)
                if not self._switching():
                    # The answers, and babeld's chatter (read on the same grid, offset by ``after``), wait
                    # in their sockets for one wake-up.
                    for sock in self.socks.values():
                        sock.quiet()
                    drain = loop.call_at((now if beat is None else beat) + after, self._drain)
                # Probes go out on the grid k * probe_interval: a due time rounds up to it, and probes
                # fall due a little early for that.
                due = beat_at_or_after(min(self.ctl.next_probe(), now + period), period)
                if due <= now:
                    due = beat_at_or_after(now + 0.001, period)
                timer = loop.call_at(due, tick, due)
            except Exception as exc:  # the task fails as a sleeping loop would, and the daemon with it
                if not failed.done():
                    failed.set_exception(exc)

        tick()
        try:
            await failed
        finally:
            for handle in (timer, drain, self._silence):
                if handle is not None:
                    handle.cancel()

    def _judge_liveness(self, now: float) -> None:
        current = self._liveness(now)
        if current != self._alive:
            for name, up in current.items():
                if self._alive.get(name) != up and up is not None:
                    what = "answers probes" if up else "stopped answering probes"
                    log.info("uplink %s: gateway %s %s", self.name, name, what)
            self._alive = current
            self.poke(now)

    def _on_datagram(self, data: bytes, addr: tuple, now: float) -> None:
        """An ack (or anything else) on a control socket; ``now``: when it arrived."""
        try:
            message = decode(data, self.config.secret, time.time())
        except ControlError as exc:
            self.counters.rejected[exc.reason] += 1
            return
        gateway = self._by_addr.get(addr[0].split("%", 1)[0])
        if gateway is None or message.kind != "ack" or message.sender != gateway:
            self.counters.rejected["unexpected"] += 1
            return
        probe = self.ctl.probes[gateway]
        # on_ack replaces ``upstream`` (never changes it in place): the old dict is the "before".
        before = (self.ctl.alive(gateway, now), probe.announced, probe.upstream)
        if not self.ctl.on_ack(gateway, message, now):
            return
        after = (self.ctl.alive(gateway, now), probe.announced, probe.upstream)
        if after != before or self._switching():
            self.poke(now)  # only what a decision depends on: acks that change nothing are not re-decided

    async def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for family, target, seq in self.ctl.checks_to_send(now):
                await self.checks[family].send(str(target), seq)
            self.poke(now)  # the verdict on unanswered checks is the controller's, at its pace
            await asyncio.sleep(self.config.check_interval)

    async def _check_recv_loop(self, check: CheckSocket) -> None:
        loop = asyncio.get_running_loop()
        target = str(next(g.check.target for g in self.ctl.groups.values() if g.family == check.family and g.check))
        while True:
            try:
                seq, source = await check.recv()
            except OSError:
                await asyncio.sleep(0.1)
                continue
            if seq is None or source.split("%", 1)[0] != target:
                continue  # someone else's ICMP (a raw socket sees all of it)
            group = self.ctl.groups[check.family]
            was_failed = group.check.failed if group.check else False
            if self.ctl.on_check_reply(check.family, seq, loop.time()) and was_failed:
                self.poke()

    # -- status ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        now, wall = loop.time(), time.time()
        params = self.config.hysteresis
        families = {}
        for family, g in self.ctl.groups.items():
            cands = []
            for view in self.ctl.candidates(family, self.view.model, self.device, now, wall):
                probe = self.ctl.probes[view.name]
                penalty = g.penalties.get(view.name)
                check = None
                if g.check is not None:
                    if penalty is not None and not penalty.over(now):
                        check = "failed"
                    elif g.check.via == view.name and g.holder == view.name:
                        check = "failing" if g.check.failed else ("ok" if g.check.last_reply is not None else "pending")
                cands.append({
                    "name": view.name,
                    "metric": view.metric if view.reachable else None,
                    "upstream_metric": view.upstream if view.upstream is not None and view.onward else None,
                    "path_metric": view.path if view.path < 0xFFFF else None,
                    "handshake_age_s": round(view.handshake_age, 1) if view.handshake_age is not None else None,
                    "state": view.state(params),
                    "alive": view.alive,
                    "check": check,
                    "penalty_s": round(penalty.duration, 1) if penalty is not None else None,
                    "probe_rtt_ms": round(probe.rtt * 1000, 2) if probe.rtt is not None else None,
                    "announced": ROLE_NAMES[probe.announced[0 if family == 4 else 1]],
                    "chosen": view.name == g.state.chosen,
                })
            last = g.state.last_switch
            families[f"ipv{family}"] = {
                "chosen": g.state.chosen,
                "holder": g.holder,
                "switching": g.transition.phase if g.transition is not None else None,
                "own_announcement": self.ctl.own_announcement(family, self.view.model),
                "steer": [str(p) for p in g.prefixes],
                "check": None if g.check is None else {
                    "target": str(g.check.target), "via": g.check.via, "replies": g.check.replies,
                    "state": "failing" if g.check.failed else ("ok" if g.check.last_reply is not None else "pending"),
                    "last_reply_s_ago": round(now - g.check.last_reply, 2) if g.check.last_reply is not None else None,
                },
                "candidates": cands,
                "switches": g.state.switches,
                "last_switch": None if last is None else {
                    "old": last.old, "new": last.new, "reason": last.reason, "cause": last.cause,
                    "ago_s": round(now - last.at, 1), "at": round(wall - (now - last.at), 3),
                },
            }
        first = next(iter(families.values()), None) or {}
        return {
            "interface": self.name,
            # The first family's view at the top level (what a single-stack uplink has), all of them under "families".
            "chosen": first.get("chosen"),
            "steer": [str(p) for p in self.config.steer],
            "device": "ok" if self.device_ok else "unreachable",
            "candidates": first.get("candidates", []),
            "switches": first.get("switches", 0),
            "last_switch": first.get("last_switch"),
            "families": families,
            "probes_per_second": self.probe_rate(),
            "prepare_ms": _summary(self.ctl.prepares),
            "reaction_ms": _summary(self.ctl.reactions),
        }

    def probe_rate(self) -> dict[str, float]:
        """Probes per second to each gateway now (each answered by one ack): what the fast detection costs."""
        return {g.name: round(1 / self.ctl.interval(g.name), 1) for g in self.config.gateways}
