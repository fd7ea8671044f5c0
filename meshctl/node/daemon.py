"""``meshctl daemon``: the asyncio layer that wires babeld, WireGuard and the controllers.

Adapters only: read, feed the pure controllers (``meshctl.uplink.client``,
``meshctl.uplink.policy``, ``meshctl.wireguard.diff``), carry out what they return,
re-arm timers.  Anything that goes wrong at the edges (babeld gone,
wireguard-go restarted, a bad datagram) is logged and counted; the loops go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from meshctl.babel.connection import Backoff, Client
from meshctl.beat import next_beat
from meshctl.config import GossipConfig, NodeConfig, load_config
from meshctl.counters import Counters
from meshctl.errors import MeshctlError
from meshctl.node.logs import REDACTOR
from meshctl.node.sockets import serve_control
from meshctl.tomlfile import forget_parser
from meshctl.topology.model import MeshView

# Loaded only when the config uses them (a router's memory is mostly libraries): the gateway and
# link runners bring pyroute2, the exporter prometheus_client, gossip Ed25519, WireGuard (uplinks,
# gateway, links) X25519; both from PyNaCl (libsodium).  The gossip table (the mesh map's
# shapes) with [gossip], or when someone asks for the map.
if TYPE_CHECKING:
    from meshctl.gossip.runner import GossipRunner
    from meshctl.gossip.table import Identity
    from meshctl.links.config import NeighbourConfig
    from meshctl.links.runner import LinkRunner
    from meshctl.node.metrics import Metrics
    from meshctl.uplink.client_runner import UplinkRunner
    from meshctl.uplink.gateway_runner import GatewayRunner
    from meshctl.wireguard.backend import Backend

log = logging.getLogger("meshctl.daemon")


class Daemon:
    """The whole node: one babeld client, its uplinks, its gateway role."""

    def __init__(self, config: NodeConfig, backend: Backend | None = None, metrics: str | None = None) -> None:
        self.config = config
        self.metrics_listen = metrics or config.metrics
        self.view = MeshView()
        self.view.listeners.append(self._model_changed)
        period, offset = config.babel_read_pace()
        pace = None
        if period > 0 and config.uplinks:  # on the probe beat: with the answers' drain, one wake-up
            pace = lambda now: next_beat(now, period, offset)  # noqa: E731
        elif period > 0:  # at most ``period`` after the last read (a gateway also reads when a probe comes)
            pace = lambda now: now + period  # noqa: E731
        self.babel = Client(config.babel, self.view, Backoff(initial=0.1, maximum=2.0), pace)
        self.counters = Counters()
        self.started = time.time()
        self.uplinks: list[UplinkRunner] = []
        if config.uplinks:
            from meshctl.uplink.client_runner import UplinkRunner
            from meshctl.wireguard.backend import choose_backend

            self.uplinks = [
                UplinkRunner(u, config.name, self.view, backend or choose_backend(u.interface), self.counters,
                             self._observe_reaction)
                for u in config.uplinks
            ]
        self.gateway: GatewayRunner | None = None
        if config.gateway:
            from meshctl.uplink.gateway_runner import GatewayRunner
            from meshctl.wireguard.backend import choose_backend

            self.gateway = GatewayRunner(config.gateway, config.name, self.view,
                                         backend or choose_backend(config.gateway.interface), self.counters,
                                         fresh=self.babel.poll_now)
        self.gossip: GossipRunner | None = None
        if config.gossip:
            from meshctl.gossip.runner import GossipRunner
            from meshctl.node.meshmap import uplink_choices

            self.gossip = GossipRunner(config.gossip, self.identity(), self.view, lambda: uplink_choices(self))
        self.backend = backend
        self.links: dict[str, LinkRunner] = {}  # neighbour name -> its tunnel
        self._link_tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._reload_lock = asyncio.Lock()
        self._metrics: Metrics | None = None
        if self.metrics_listen:
            self._metrics = self.metrics

    @property
    def metrics(self) -> Metrics:
        """The Prometheus exporter; made (and prometheus_client loaded) when first asked for."""
        if self._metrics is None:
            from meshctl.node.metrics import Metrics

            self._metrics = Metrics(self)
        return self._metrics

    def _observe_reaction(self, uplink: str, seconds: float) -> None:
        if self._metrics is not None:  # no exporter, nobody to tell
            self._metrics.observe_reaction(uplink, seconds)

    def identity(self) -> Identity:
        """What this node says of itself in gossip, from its config."""
        from meshctl.gossip.table import Identity

        config = self.config
        keys = [u.keys.public for u in config.uplinks] + ([config.gateway.keys.public] if config.gateway else [])
        if config.links:
            keys.append(config.links.keys.public)
        roles = (["client"] if config.uplinks else []) + (["gateway"] if config.gateway else [])
        endpoints = config.gossip.endpoints if config.gossip else ()
        return Identity(config.name, tuple(keys), tuple(endpoints), tuple(roles))

    def _start_link(self, neighbour: NeighbourConfig) -> None:
        assert self._tg is not None and self.config.links is not None
        from meshctl.links.runner import LinkRunner

        own = self.config.gossip.endpoints if self.config.gossip else ()
        runner = LinkRunner(self.config.name, self.config.links, neighbour, self.view, self.babel.command, self.backend,
                            advertised=lambda name: _advertised(self.gossip, name), own_advertised=len(own))
        self.links[neighbour.name] = runner
        self._link_tasks[neighbour.name] = self._tg.create_task(runner.run())

    async def _stop_link(self, name: str) -> None:
        task = self._link_tasks.pop(name)
        self.links.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # its finally retires the tunnel

    def reload(self) -> None:
        """SIGHUP: re-read the config file; apply link changes now, say what needs a restart."""
        if self._tg is None:
            log.warning("reload: not running yet; ignored")
            return
        self._tg.create_task(self._reload())  # held by the task group, not left for the GC to collect

    async def _reload(self) -> None:
        async with self._reload_lock:  # one at a time: a second SIGHUP compares with what the first left
            try:
                await self._reload_once()
            except Exception:  # a reload that goes wrong must not take the running daemon with it
                log.exception("reload failed; the daemon goes on with what it had")

    async def _reload_once(self) -> None:
        try:
            new = load_config(self.config.source)
        except MeshctlError as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return
        finally:
            forget_parser()
        for key in new.private_keys():
            REDACTOR.add(key)
        needs_restart = [what for what, old, fresh in (
            ("node", (self.config.name, self.config.babel, self.config.control_socket, self.config.metrics),
             (new.name, new.babel, new.control_socket, new.metrics)),
            ("uplink", self.config.uplinks, new.uplinks),
            ("gateway", self.config.gateway, new.gateway),
            ("gossip", _gossip_key(self.config.gossip), _gossip_key(new.gossip)),
        ) if old != fresh]
        if needs_restart:
            log.warning("reload: %s changed, which takes a restart; applying [links] only", ", ".join(needs_restart))
        old_links, new_links = self.config.links, new.links
        same_base = (old_links is not None and new_links is not None
                     and dataclasses.replace(old_links, neighbours=()) == dataclasses.replace(new_links, neighbours=()))
        old = {n.name: n for n in old_links.neighbours} if old_links else {}
        fresh = {n.name: n for n in new_links.neighbours} if new_links else {}
        retire = [name for name in old if name not in fresh or not same_base]
        create = [name for name in fresh if name not in old or name in retire]
        update = [name for name in fresh if name in old and name not in retire and fresh[name] != old[name]]
        for name in retire:
            await self._stop_link(name)
        self.config = dataclasses.replace(self.config, links=new_links)
        for name in create:
            self._start_link(fresh[name])
        for name in update:  # its runner adds, retires and rewrites only the tunnels that changed
            self.links[name].reconfigure(fresh[name])
        log.warning("reload: links retired %s, created %s, updated %s", ", ".join(retire) or "none",
                    ", ".join(create) or "none", ", ".join(update) or "none",
                    extra={"event": "reload", "links_retired": retire, "links_created": create,
                           "links_updated": update, "needs_restart": needs_restart})

    def _model_changed(self) -> None:
        now = asyncio.get_running_loop().time()
        for u in self.uplinks:
            u.poke(now)

    async def run(self) -> None:
        """Run until cancelled; clean up what must not outlive the daemon."""
        metrics_server = await self.metrics.serve(self.metrics_listen) if self.metrics_listen else None
        server = await serve_control(self.config.control_socket, {"status": self.status, "mesh": self.mesh})
        log.info("meshctl daemon for %s started (%d uplink(s)%s)", self.config.name, len(self.uplinks),
                 ", gateway" if self.gateway else "")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.babel.run())
                for u in self.uplinks:
                    tg.create_task(u.run())
                if self.gateway:
                    tg.create_task(self.gateway.run())
                if self.gossip:
                    tg.create_task(self.gossip.run())
                self._tg = tg
                for n in self.config.links.neighbours if self.config.links else ():
                    self._start_link(n)
        finally:
            server.close()
            if metrics_server is not None:
                metrics_server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.control_socket)
            # The gateway runner withdraws its announcements in its own finally, before the task group ends.

    def mesh(self) -> dict[str, Any]:
        """The whole mesh as gossip shows it (this node alone without gossip)."""
        from meshctl.node.meshmap import mesh_doc

        return mesh_doc(self)

    def status(self) -> dict[str, Any]:
        """Everything ``meshctl status`` shows."""
        stats = self.babel.stats
        return {
            "node": self.config.name,
            "uptime_s": round(time.time() - self.started, 1),
            "babel": {
                "address": str(self.config.babel),
                "synced": self.view.synced,
                "router_id": self.view.model.me.router_id,
                "reconnects": stats.reconnects,
                "malformed_lines": stats.malformed,
                "last_error": stats.last_error or None,
            },
            "uplinks": [u.status() for u in self.uplinks],
            "gateway": self.gateway.status() if self.gateway else None,
            "gossip": self.gossip.status() if self.gossip else None,
            "links": [link.status() for _, link in sorted(self.links.items())],
            "counters": {
                "rejected_datagrams": dict(self.counters.rejected),
                "backend_errors": self.counters.backend_errors,
                "route_errors": self.counters.route_errors,
            },
        }


def wait_for_children_without_threads() -> None:
    """Have asyncio learn of child exits from a pidfd on the running loop, not from a thread per child.

    Python 3.11's default watcher waits for each child (the gateway's watchdog
    shell, a link's wireguard-go) in a thread of its own for as long as the child
    lives, and a thread costs its stack and a malloc arena.  Python 3.12 picks the
    pidfd watcher by itself, where the kernel has pidfds (Linux 5.3); so does this.
    Call it from the daemon's loop, which it stays attached to.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel without pidfds: keep the threads
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def _advertised(gossip: GossipRunner | None, name: str) -> tuple[str, ...] | None:
    """The endpoints ``name`` advertises in gossip; None while no description of it is held."""
    entry = gossip.table.entries.get(name) if gossip else None
    return entry.description.node.endpoints if entry else None


def _gossip_key(g: GossipConfig | None) -> object:
    """What identifies a gossip config (the signing key object compares by identity)."""
    return None if g is None else (g.key.public, g.port, g.lifetime, g.trusted, g.endpoints)
