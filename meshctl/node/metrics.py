"""Prometheus metrics for ``meshctl daemon --metrics [::1]:9474``.

Gauges and counters are read from the daemon's own state when Prometheus
scrapes (a custom collector), so the control path pays nothing for them.
Only the reaction-time histogram is fed as it happens, since a scrape cannot
recover the observations between two scrapes.

The HTTP side is a few lines on asyncio's own server: one ``GET /metrics``,
answered on the event loop, so the collector never reads state that another
thread is changing (prometheus_client's ``start_http_server`` would run in a
thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshctl import __version__
from meshctl.errors import MeshctlError
from meshctl.listen import parse_listen
from meshctl.uplink.control import ROLE_NONE
from meshctl.uplink.policy import CAUSES

if TYPE_CHECKING:
    from meshctl.node.daemon import Daemon

log = logging.getLogger("meshctl.metrics")

# Controller reaction (trigger to completed WireGuard write): the goal is
# under 10 ms, so the buckets are fine below that and coarse above.
# What generate_latest writes: the classic text format, which every
# Prometheus understands (newer prometheus_client releases label it 1.0.0).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
REACTION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _reach_ratio(reach: int) -> float:
    """Share of the last 16 hellos heard (babeld's reach bitmap)."""
    return bin(reach & 0xFFFF).count("1") / 16


class DaemonCollector(Collector):
    """Everything but the histogram, from the daemon's state at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        info = GaugeMetricFamily("meshctl_info", "meshctl version and node name", labels=["version", "node"])
        info.add_metric([__version__, d.config.name], 1)
        yield info
        synced = GaugeMetricFamily("meshctl_babel_synced", "1 while the daemon holds a complete view from babeld")
        synced.add_metric([], 1 if d.view.synced else 0)
        yield synced
        yield from self._neighbours()
        yield from self._uplinks()
        yield from self._gateway()
        yield from self._gossip()
        yield from self._counters()

    def _neighbours(self) -> Iterator[Metric]:
        labels = ["interface", "address"]
        fams = {
            "cost": GaugeMetricFamily("meshctl_babel_neighbour_cost", "Babel link cost (65535: unreachable)", labels=labels),
            "rxcost": GaugeMetricFamily("meshctl_babel_neighbour_rxcost", "Babel receive cost", labels=labels),
            "txcost": GaugeMetricFamily("meshctl_babel_neighbour_txcost", "Babel transmit cost", labels=labels),
            "rtt": GaugeMetricFamily("meshctl_babel_neighbour_rtt_seconds", "Babel round-trip time", labels=labels),
            "reach": GaugeMetricFamily(
                "meshctl_babel_neighbour_reachability_ratio", "Share of the last 16 hellos heard", labels=labels
            ),
        }
        for n in self.daemon.view.model.neighbours.values():
            values = [n.interface, str(n.address)]
            fams["cost"].add_metric(values, n.cost)
            fams["rxcost"].add_metric(values, n.rxcost)
            fams["txcost"].add_metric(values, n.txcost)
            if n.rtt is not None:
                fams["rtt"].add_metric(values, n.rtt / 1000)  # babeld prints milliseconds
            fams["reach"].add_metric(values, _reach_ratio(n.reach))
        yield from fams.values()

    def _uplinks(self) -> Iterator[Metric]:
        labels = ["uplink", "family", "gateway"]

        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=labels)

        metric = gauge("meshctl_uplink_candidate_metric", "Babel metric toward the gateway")
        upstream = gauge("meshctl_uplink_candidate_upstream_metric",
                         "The gateway's own Babel metric toward the steered prefixes (65535: no route)")
        path = gauge("meshctl_uplink_candidate_path_metric", "Metric of the whole path: to the gateway, then onward")
        age = gauge("meshctl_uplink_candidate_handshake_age_seconds", "Age of the last WireGuard handshake")
        warm = gauge("meshctl_uplink_candidate_warm", "1 when a switch to it needs no handshake")
        up = gauge("meshctl_uplink_candidate_up", "1 when it answers probes through its tunnel")
        healthy = gauge("meshctl_uplink_candidate_check_ok", "0 while the end-to-end check through it failed lately")
        chosen = gauge("meshctl_uplink_candidate_chosen", "1 for the gateway holding the steered prefixes")
        switches = CounterMetricFamily(
            "meshctl_uplink_switches", "Gateway switches by cause", labels=["uplink", "cause"]
        )
        checks = CounterMetricFamily("meshctl_uplink_check_replies", "End-to-end check replies received",
                                     labels=["uplink", "family"])
        # asyncio's loop clock is time.monotonic(), the clock the controllers keep.
        now, wall = time.monotonic(), time.time()
        for u in self.daemon.uplinks:
            for family, group in u.ctl.groups.items():
                fam = f"ipv{family}"
                for view in u.ctl.candidates(family, self.daemon.view.model, u.device, now, wall):
                    values = [u.name, fam, view.name]
                    metric.add_metric(values, view.metric)
                    upstream.add_metric(values, view.upstream if view.upstream is not None else 0xFFFF)
                    path.add_metric(values, view.path)
                    if view.handshake_age is not None:
                        age.add_metric(values, view.handshake_age)
                    warm.add_metric(values, 1 if view.warm(u.config.hysteresis) else 0)
                    up.add_metric(values, 1 if view.alive else 0)
                    healthy.add_metric(values, 1 if view.healthy else 0)
                    chosen.add_metric(values, 1 if view.name == group.holder else 0)
                if group.check is not None:
                    checks.add_metric([u.name, fam], group.check.replies)
            for cause in CAUSES:  # every cause present from the start, so rate() sees the first switch
                switches.add_metric([u.name, cause], u.ctl.causes.get(cause, 0))
        yield from (metric, upstream, path, age, warm, up, healthy, chosen, switches, checks)

    def _gateway(self) -> Iterator[Metric]:
        gw = self.daemon.gateway
        if gw is None:
            return
        role = GaugeMetricFamily(
            "meshctl_gateway_client_announced",
            "What this gateway announces for a client: 0 nothing, 1 standby, 2 primary",
            labels=["client"],
        )
        for name in gw.clients:
            role.add_metric([name], gw.roles.get(name, ROLE_NONE))
        yield role

    def _gossip(self) -> Iterator[Metric]:
        g = self.daemon.gossip
        if g is None:
            return
        origins = GaugeMetricFamily("meshctl_gossip_origins", "Other nodes whose description this node holds")
        origins.add_metric([], len(g.table.entries))
        yield origins
        yield CounterMetricFamily("meshctl_gossip_accepted", "Gossip descriptions accepted (new)", value=g.table.accepted)
        rejected = CounterMetricFamily("meshctl_gossip_rejected_datagrams", "Gossip datagrams dropped, by reason",
                                       labels=["reason"])
        for reason, count in sorted(g.table.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        traffic = CounterMetricFamily("meshctl_gossip", "Gossip traffic", labels=["direction"], unit="bytes")
        traffic.add_metric(["in"], g.bytes_in)
        traffic.add_metric(["out"], g.bytes_out)
        yield traffic

    def _counters(self) -> Iterator[Metric]:
        d = self.daemon
        stats = d.babel.stats

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, value=value)

        yield counter("meshctl_babel_reconnects", "Reconnections to babeld's local interface", stats.reconnects)
        yield counter("meshctl_babel_malformed_lines", "Lines from babeld that did not parse (each forces a resync)",
                      stats.malformed)
        yield counter("meshctl_wireguard_write_errors", "Failed WireGuard backend writes", d.counters.backend_errors)
        yield counter("meshctl_route_errors", "Failed kernel route changes (gateway announcements)", d.counters.route_errors)
        rejected = CounterMetricFamily(
            "meshctl_control_rejected_datagrams", "Control datagrams dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(d.counters.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected


class Metrics:
    """The daemon's registry: its collector plus the reaction histogram."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.reaction = Histogram(
            "meshctl_uplink_reaction_seconds",
            "Controller reaction: Babel event or probe loss to completed WireGuard write",
            ["uplink"],
            buckets=REACTION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(DaemonCollector(daemon))
        for u in daemon.uplinks:
            self.reaction.labels(u.name)  # present (at zero) before the first switch

    def observe_reaction(self, uplink: str, seconds: float) -> None:
        self.reaction.labels(uplink).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, listen: str) -> asyncio.AbstractServer:
        """Serve ``GET /metrics`` on ``listen``; MeshctlError if the address cannot be bound."""
        host, port = parse_listen(listen)
        try:
            server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise MeshctlError(f"metrics: cannot listen on {listen}: {exc.strerror}") from None
        log.info("metrics: serving http://%s/metrics", listen)
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            request = head.split(b"\r\n", 1)[0].split()
            if len(request) != 3 or request[0] not in (b"GET", b"HEAD"):
                status, body, ctype = b"405 Method Not Allowed", b"only GET /metrics\n", b"text/plain"
            elif request[1].split(b"?", 1)[0] != b"/metrics":
                status, body, ctype = b"404 Not Found", b"see /metrics\n", b"text/plain"
            else:
                status, body, ctype = b"200 OK", self.exposition(), CONTENT_TYPE
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                + (body if request[:1] != [b"HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
