"""The asyncio side of one uplink: probes, WireGuard reads and writes, make-before-break."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from meshctl.config import UplinkConfig
from meshctl.counters import Counters
from meshctl.topology.model import MeshView
from meshctl.udp import BoundSocket
from meshctl.uplink.client import UplinkController
from meshctl.uplink.control import ROLE_NAMES, ROLE_NONE, ROLE_PRIMARY, ROLE_STANDBY, ControlError, decode, encode
from meshctl.uplink.policy import Switch
from meshctl.wireguard.backend import Backend
from meshctl.wireguard.diff import apply_to, diff
from meshctl.wireguard.state import Device
from meshctl.wireguard.uapi import UapiError

log = logging.getLogger("meshctl.daemon")

DEVICE_POLL = 1.0  # seconds between WireGuard reads (handshake ages, restarts)
RELEASE_TIMEOUT = 0.25  # seconds to wait for the old gateway to confirm it let go
FAILURE_CAUSES = frozenset({"unreachable", "down", "gone"})


def _summary(values: Any) -> dict[str, Any]:
    data = sorted(values)
    if not data:
        return {"count": 0, "median": None, "p99": None}
    return {
        "count": len(data),
        "median": round(statistics.median(data) * 1000, 3),
        "p99": round(data[min(len(data) - 1, int(len(data) * 0.99))] * 1000, 3),
    }


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
        self.sock = BoundSocket(str(config.address.ip), 0, config.interface, f"uplink {config.interface}")
        self._trigger: float | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.device_ok = False
        self._changed = asyncio.Event()  # an ack came or Babel changed: waits re-check

    @property
    def name(self) -> str:
        return self.config.interface

    async def run(self) -> None:
        await self.sock.open()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._device_loop())
            tg.create_task(self._probe_loop())
            tg.create_task(self._recv_loop())

    # -- evaluation -----------------------------------------------------

    def poke(self, trigger: float | None = None) -> None:
        """Something changed: evaluate soon (coalesced), remembering the earliest trigger."""
        self._changed.set()
        trigger = asyncio.get_running_loop().time() if trigger is None else trigger
        if self._trigger is None or trigger < self._trigger:
            self._trigger = trigger
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._evaluate()))

    async def _evaluate(self) -> None:
        self._scheduled = False
        async with self.evaluate_lock:  # a planned switch waits; later pokes queue behind it
            trigger, self._trigger = self._trigger, None
            loop = asyncio.get_running_loop()
            model = self.view.model
            switch = self.ctl.decide(model, self.device, loop.time(), time.time())
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.ctl.next_deadline is not None:
                self._timer = loop.call_at(self.ctl.next_deadline, self.poke)
            if switch is None:
                return
            planned = self.ctl.planned(switch, loop.time())
            if planned:
                # The wait for the new return path is protocol, not controller latency:
                # it is recorded apart, and the reaction counts from trigger to write
                # without it.
                waited = loop.time()
                # Until then the old gateway keeps the prefixes, whoever else writes the device.
                self.ctl.holder = switch.old
                try:
                    planned = await self._make_before_break(switch.new, switch.old or "")
                finally:
                    self.ctl.holder = None
                waited = loop.time() - waited
                self.ctl.prepares.append(waited)
                if trigger is not None:
                    trigger += waited
            try:
                ok = await self.converge()
            finally:
                self.ctl.transition = None  # the choice (new) is primary now; old stays released
            done = loop.time()
            reaction = done - trigger if trigger is not None else 0.0
            if ok:
                self.ctl.reactions.append(reaction)
                if self.on_reaction is not None:
                    self.on_reaction(self.name, reaction)
            self._log_switch(switch, planned, ok, reaction, self._outage(switch, planned, done))
            await self._send_probes()  # tell the new gateway at once (and the old one, if not told yet)

    def _outage(self, switch: Switch, planned: bool, done: float) -> float | None:
        """For a switch away from a failed gateway: how long traffic may have been lost.

        The old gateway's last probe answer bounds when it failed, so the
        outage is at most the time from there to the completed write.
        """
        if planned or switch.old is None:
            return None
        last = self.ctl.probes[switch.old].last_ack
        return done - last if last is not None else None

    def _log_switch(self, switch: Switch, planned: bool, ok: bool, reaction: float, outage: float | None) -> None:
        """The decision line: what changed and why, one line, with the same facts as fields for JSON logs.

        WARNING when the old gateway failed (someone may want to know why),
        INFO for an initial choice or a planned move to a better gateway,
        ERROR when the write that should carry it out failed.
        """
        level = logging.ERROR if not ok else logging.WARNING if switch.cause in FAILURE_CAUSES else logging.INFO
        how = "make-before-break, " if planned else ""
        if outage is not None:
            how += f"outage at most {outage * 1000:.0f} ms since {switch.old}'s last probe answer, "
        result = "done" if ok else "FAILED"
        log.log(
            level,
            "uplink %s: %s -> %s, %s (%sWireGuard write %s %.1f ms after the trigger)",
            self.name, switch.old or "none", switch.new, switch.reason, how, result, reaction * 1000,
            extra={
                "event": "switch", "uplink": self.name, "old": switch.old, "new": switch.new,
                "cause": switch.cause, "reason": switch.reason, "old_metric": switch.old_metric,
                "new_metric": switch.new_metric, "planned": planned, "write_ok": ok,
                "reaction_ms": round(reaction * 1000, 3),
                "outage_ms": round(outage * 1000, 1) if outage is not None else None,
            },
        )

    async def _make_before_break(self, new: str, old: str, timeout: float = 1.0) -> bool:
        """Prepare the return path through ``new`` and release ``old``; the caller then writes WireGuard.

        False if ``old`` died meanwhile: then the switch is a failure's, at once.

        WireGuard drops a packet that arrives from a peer which does not own
        its source address, so after the write every reply still coming out of
        ``old``'s tunnel is lost, and before it every reply out of ``new``'s.
        Hence the order:

        1. ``new`` announces us as a standby (a high metric): the mesh learns a
           path through ``new`` but keeps sending our replies to ``old``.
        2. ``old`` is released, and we wait for its ack saying it withdrew.  It
           hands replies that still reach it to the mesh (its handoff route),
           not to its tunnel, so they come to us over a Babel link, which no
           AllowedIPs filter.  Nothing left in ``old``'s tunnel is newer than
           its ack.
        3. (The caller) the WireGuard write, then ``new`` becomes primary.

        The mesh moves its return path to ``new`` only when ``old``'s
        withdrawal has spread, tens of milliseconds after the write.
        """
        loop = asyncio.get_running_loop()

        def old_died() -> bool:
            # Nothing left to make before breaking: switch at once.
            return not self.ctl.probes[old].alive(loop.time(), self.ctl.probe_timeout)

        self.ctl.transition = {old: ROLE_PRIMARY, new: ROLE_STANDBY}
        await self._send_probes()
        standby = await self._until(
            lambda: old_died()
            or self.ctl.probes[new].announced >= ROLE_STANDBY
            and self.ctl.announcement_seen(new, self.view.model),
            timeout,
        )
        if old_died():
            log.info("uplink %s: %s stopped answering while the switch was prepared; switching now", self.name, old)
            return False
        if not standby:
            log.info("uplink %s: %s's standby announcement not seen in Babel within %.1f s; switching anyway",
                     self.name, new, timeout)
        self.ctl.transition = {old: ROLE_NONE, new: ROLE_STANDBY}
        await self._send_probes()
        released = await self._until(lambda: old_died() or self.ctl.probes[old].announced == ROLE_NONE,
                                     RELEASE_TIMEOUT)
        if old_died():
            log.info("uplink %s: %s stopped answering while it was released; switching now", self.name, old)
            return False
        if not released:
            log.info("uplink %s: %s did not confirm its release within %.2f s; switching anyway",
                     self.name, old, RELEASE_TIMEOUT)
        return True

    async def _until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()``, re-checking at every ack and every Babel change; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def converge(self) -> bool:
        """Bring the device to the desired state in one write; False on failure."""
        async with self.write_lock:
            desired = self.ctl.desired()
            request = diff(desired, self.device)
            if request is None:
                return True
            try:
                await self.backend.write(self.name, request)
            except UapiError as exc:
                self.counters.backend_errors += 1
                self.device_ok = False
                log.error("uplink %s: WireGuard write failed: %s", self.name, exc)
                return False
            # What WireGuard now holds, without waiting for the next read.
            self.device = apply_to(self.device or Device(self.name), request)
            return True

    # -- loops ----------------------------------------------------------

    async def _device_loop(self) -> None:
        """Read WireGuard state; re-apply the desired state after a restart or drift."""
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
                await self.sock.check()
                await self.converge()  # writes only if the device drifted (e.g. wireguard-go restarted)
                self.poke()  # handshake ages moved
            await asyncio.sleep(DEVICE_POLL)

    async def _send_probes(self) -> None:
        loop = asyncio.get_running_loop()
        for gw, message in self.ctl.probes_to_send(loop.time(), time.time()):
            await self.sock.send(encode(message, self.config.secret), (str(gw.control), self.config.control_port))

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        alive: dict[str, bool] = {}
        while True:
            await self._send_probes()
            await asyncio.sleep(self.config.probe_interval)
            now = loop.time()
            current = {n: p.alive(now, self.ctl.probe_timeout) for n, p in self.ctl.probes.items()}
            if current != alive:
                for name, up in current.items():
                    if alive.get(name, False) != up:
                        what = "answers probes" if up else "stopped answering probes"
                        log.info("uplink %s: gateway %s %s", self.name, name, what)
                alive = current
                self.poke(now)

    async def _recv_loop(self) -> None:
        by_addr = {str(g.control): g.name for g in self.config.gateways}
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await self.sock.recv()
            now = loop.time()
            try:
                message = decode(data, self.config.secret, time.time())
            except ControlError as exc:
                self.counters.rejected[exc.reason] += 1
                continue
            gateway = by_addr.get(addr[0])
            if gateway is None or message.kind != "ack" or message.sender != gateway:
                self.counters.rejected["unexpected"] += 1
                continue
            if self.ctl.on_ack(gateway, message, now):
                self.poke(now)
            self._changed.set()

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        now, wall = loop.time(), time.time()
        params = self.config.hysteresis
        cands = []
        for view in self.ctl.candidates(self.view.model, self.device, now, wall):
            probe = self.ctl.probes[view.name]
            cands.append(
                {
                    "name": view.name,
                    "metric": view.metric if view.reachable else None,
                    "handshake_age_s": round(view.handshake_age, 1) if view.handshake_age is not None else None,
                    "state": view.state(params),
                    "alive": view.alive,
                    "probe_rtt_ms": round(probe.rtt * 1000, 2) if probe.rtt is not None else None,
                    "announced": ROLE_NAMES[probe.announced],
                    "chosen": view.name == self.ctl.state.chosen,
                }
            )
        last = self.ctl.state.last_switch
        return {
            "interface": self.name,
            "chosen": self.ctl.state.chosen,
            "steer": [str(p) for p in self.config.steer],
            "device": "ok" if self.device_ok else "unreachable",
            "candidates": cands,
            "switches": self.ctl.state.switches,
            "last_switch": None
            if last is None
            else {
                "old": last.old,
                "new": last.new,
                "reason": last.reason,
                "ago_s": round(now - last.at, 1),
                "at": round(wall - (now - last.at), 3),
            },
            "prepare_ms": _summary(self.ctl.prepares),
            "reaction_ms": _summary(self.ctl.reactions),
        }

