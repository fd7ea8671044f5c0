"""Prometheus metrics and the live mesh map for ``meshctl daemon --metrics [::1]:9474``.

Gauges and counters are read from the daemon's own state when Prometheus
scrapes (a custom collector), so the control path pays nothing for them.
Only the reaction-time histogram is fed as it happens, since a scrape cannot
recover the observations between two scrapes.

The exposition is prometheus_client's own (its ASGI app: gzip, OpenMetrics
when the scraper asks for it, ``name[]`` filtering), driven on the event loop
by :mod:`meshctl.node.httpd`, which bounds connections and time so that the
listener can never starve the fail-over path of descriptors.  The same
listener serves the mesh map: ``/mesh`` (a page that refreshes itself from
``/mesh.json``, the mesh's NetJSON from gossip).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshctl import __version__
from meshctl.errors import MeshctlError
from meshctl.listen import parse_listen
from meshctl.node.httpd import BoundedServer, Request, Response

if TYPE_CHECKING:
    from meshctl.node.daemon import Daemon
    from meshctl.wireguard.state import Device

log = logging.getLogger("meshctl.metrics")

# Controller reaction (trigger to completed WireGuard write): the goal is
# under 10 ms, so the buckets are fine below that and coarse above.
REACTION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

#: Why a control datagram is dropped (meshctl.uplink.control and its runners).
#: Each is exported from the start at 0, so ``increase(...{reason="forged"})``
#: sees the very first one; a reason not listed here still shows once counted.
CONTROL_REASONS = ("oversized", "truncated", "bad-mac", "malformed", "stale", "replay", "unknown-client",
                   "wrong-source", "unexpected")

DEVICE_READ_TIMEOUT = 1.0  # seconds for one WireGuard device read at scrape time


def _reach_ratio(reach: int) -> float:
    """Share of the last 16 hellos heard (babeld's reach bitmap)."""
    return bin(reach & 0xFFFF).count("1") / 16


class DaemonCollector(Collector):
    """Everything but the histogram and the process metrics, from the daemon's state at scrape time."""

    def __init__(self, daemon: Daemon, devices: dict[str, Device]) -> None:
        self.daemon = daemon
        self.devices = devices  # gateway and link devices, read just before each scrape

    def describe(self) -> list[Metric]:
        """The families this daemon exports (fixed by its config), so that ``name[]`` filtering finds them."""
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        info = GaugeMetricFamily("meshctl_info", "meshctl version and node name", labels=["version", "node"])
        info.add_metric([__version__, d.config.name], 1)
        yield info
        synced = GaugeMetricFamily("meshctl_babel_synced", "1 while the daemon holds a complete view from babeld")
        synced.add_metric([], 1 if d.view.synced else 0)
        yield synced
        yield from self._neighbours()
        yield from self._tables()
        yield from self._uplinks()
        yield from self._gateway()
        yield from self._links()
        yield from self._wireguard()
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

    def _tables(self) -> Iterator[Metric]:
        """babeld's table sizes per interface (as bird_exporter gives them per protocol)."""
        model = self.daemon.view.model
        interfaces = set(model.interfaces)
        routes: Counter[str] = Counter()
        installed: Counter[str] = Counter()
        for r in model.routes.values():
            routes[r.interface] += 1
            if r.installed and r.reachable:
                installed[r.interface] += 1
        neighbours: Counter[str] = Counter(n.interface for n in model.neighbours.values() if n.reachable)
        labels = ["interface"]
        fams = (
            (GaugeMetricFamily("meshctl_babel_routes", "Routes babeld learnt through the interface (selected or not)",
                               labels=labels), routes),
            (GaugeMetricFamily("meshctl_babel_installed_routes", "Routes babeld installed through the interface",
                               labels=labels), installed),
            (GaugeMetricFamily("meshctl_babel_neighbours", "Reachable Babel neighbours on the interface",
                               labels=labels), neighbours),
        )
        for family, counts in fams:
            for ifname in sorted(interfaces | set(counts)):  # every babeld interface, at 0 if empty
                family.add_metric([ifname], counts.get(ifname, 0))
            yield family
        yield GaugeMetricFamily("meshctl_babel_exported_routes", "Routes this node redistributes into Babel",
                                value=len(model.xroutes))

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
            for family, group in getattr(u.ctl, "groups", {}).items():
                fam = f"ipv{family}"
                try:
                    views = list(u.ctl.candidates(family, self.daemon.view.model, u.device, now, wall))
                except Exception:  # the controllers grow; a change here must not cost the whole scrape
                    log.exception("metrics: uplink %s: cannot read its candidates", u.name)
                    views = []
                for view in views:
                    values = [u.name, fam, view.name]
                    metric.add_metric(values, view.metric)
                    onward = getattr(view, "upstream", None)
                    upstream.add_metric(values, onward if onward is not None else 0xFFFF)
                    path.add_metric(values, getattr(view, "path", view.metric))
                    handshake_age = getattr(view, "handshake_age", None)
                    if handshake_age is not None:
                        age.add_metric(values, handshake_age)
                    warm.add_metric(values, 1 if view.warm(u.config.hysteresis) else 0)
                    up.add_metric(values, 1 if getattr(view, "alive", False) else 0)
                    healthy.add_metric(values, 1 if getattr(view, "healthy", True) else 0)
                    chosen.add_metric(values, 1 if view.name == getattr(group, "holder", None) else 0)
                check = getattr(group, "check", None)
                if check is not None:
                    checks.add_metric([u.name, fam], check.replies)
            from meshctl.uplink.policy import CAUSES  # loaded with the uplink already: free here

            causes = getattr(u.ctl, "causes", {})
            for cause in sorted(set(CAUSES) | set(causes)):  # every cause from the start, so rate() sees the first switch
                switches.add_metric([u.name, cause], causes.get(cause, 0))
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
        from meshctl.uplink.control import ROLE_NONE  # loaded with the gateway already: free here

        for name in gw.clients:
            role.add_metric([name], gw.roles.get(name, ROLE_NONE))
        yield role

    def _wireguard(self) -> Iterator[Metric]:
        """Per-peer bytes and handshake, named and labelled as prometheus_wireguard_exporter does.

        ``friendly_name`` is the name the config gives the peer (a gateway, a
        client, a neighbour), so dashboards made for that exporter work here.
        """
        labels = ["interface", "public_key", "friendly_name"]
        sent = CounterMetricFamily("wireguard_sent_bytes", "Bytes sent to the peer", labels=labels)
        received = CounterMetricFamily("wireguard_received_bytes", "Bytes received from the peer", labels=labels)
        handshake = GaugeMetricFamily("wireguard_latest_handshake_seconds",
                                      "Seconds since the epoch of the latest handshake with the peer (0: never)",
                                      labels=labels)
        for device, names in self._devices():
            for peer in device.peers:
                values = [device.name, peer.public_key, names.get(peer.public_key, "")]
                sent.add_metric(values, peer.tx_bytes)
                received.add_metric(values, peer.rx_bytes)
                handshake.add_metric(values, peer.last_handshake)
        yield from (sent, received, handshake)

    def _devices(self) -> Iterator[tuple[Device, dict[str, str]]]:
        d = self.daemon
        for u in d.uplinks:
            if u.device is not None:  # the uplink runner reads its device every poll: no read needed here
                yield u.device, {g.public_key: g.name for g in u.config.gateways}
        if d.gateway is not None and d.gateway.config.interface in self.devices:
            yield self.devices[d.gateway.config.interface], {c.public_key: c.name for c in d.gateway.config.clients}
        for name, link in sorted(d.links.items()):
            for _, ifname in link.devices():  # one device per underlay path
                device = self.devices.get(ifname)
                if device is not None:
                    yield device, {link.n.public_key: name}

    def _links(self) -> Iterator[Metric]:
        """Each managed tunnel (one per underlay path): up, carrying, cost; and endpoint moves per neighbour."""
        labels = ["neighbour", "interface", "endpoint"]
        up = GaugeMetricFamily("meshctl_link_path_up", "1 while babeld hears the neighbour over this path", labels=labels)
        carrying = GaugeMetricFamily("meshctl_link_path_carrying", "1 for the path Babel routes the neighbour through",
                                     labels=labels)
        cost = GaugeMetricFamily("meshctl_link_path_cost", "Babel link cost of this path (65535: unreachable)",
                                 labels=labels)
        moves = CounterMetricFamily("meshctl_link_endpoint_moves", "Endpoint moves of a one-tunnel neighbour",
                                    labels=["neighbour"])
        for name, link in sorted(self.daemon.links.items()):
            try:
                status = link.status()
            except RuntimeError:  # no running loop (a scrape outside the daemon): nothing to say
                continue
            for path in status.get("paths", []):
                values = [name, str(path.get("interface")), str(path.get("endpoint"))]
                up.add_metric(values, 1 if path.get("state") == "up" else 0)
                carrying.add_metric(values, 1 if path.get("carrying") else 0)
                if path.get("cost") is not None:
                    cost.add_metric(values, path["cost"])
            moves.add_metric([name], status.get("moves", 0))
        yield from (up, carrying, cost, moves)

    def _gossip(self) -> Iterator[Metric]:
        g = self.daemon.gossip
        if g is None:
            return
        from meshctl.gossip.table import REJECT_REASONS as GOSSIP_REASONS  # loaded with gossip already: free here

        origins = GaugeMetricFamily("meshctl_gossip_origins", "Other nodes whose description this node holds")
        origins.add_metric([], len(g.table.entries))
        yield origins
        yield CounterMetricFamily("meshctl_gossip_accepted", "Gossip descriptions accepted (new)", value=g.table.accepted)
        yield _by_reason("meshctl_gossip_rejected_datagrams", "Gossip datagrams dropped, by reason",
                         GOSSIP_REASONS, g.table.rejected)
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
        yield counter("meshctl_babel_malformed_lines", "Lines from babeld that did not parse (each skipped and counted)",
                      stats.malformed)
        yield counter("meshctl_wireguard_write_errors", "Failed WireGuard backend writes", d.counters.backend_errors)
        yield counter("meshctl_route_errors", "Failed kernel route changes (gateway announcements)", d.counters.route_errors)
        yield _by_reason("meshctl_control_rejected_datagrams", "Control datagrams dropped, by reason",
                         CONTROL_REASONS, d.counters.rejected)


def _by_reason(name: str, text: str, known: tuple[str, ...], counts: Counter[str]) -> CounterMetricFamily:
    """A counter per reason, every known reason present from the start."""
    family = CounterMetricFamily(name, text, labels=["reason"])
    for reason in sorted(set(known) | set(counts)):
        family.add_metric([reason], counts.get(reason, 0))
    return family


class Metrics:
    """The daemon's registry (its collector, process metrics, the reaction histogram) and its HTTP listener."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry(auto_describe=False)
        self.reaction = Histogram(
            "meshctl_uplink_reaction_seconds",
            "Controller reaction: Babel event or probe loss to completed WireGuard write",
            ["uplink"],
            buckets=REACTION_BUCKETS,
            registry=self.registry,
        )
        self.devices: dict[str, Device] = {}
        self.registry.register(DaemonCollector(daemon, self.devices))
        ProcessCollector(registry=self.registry)  # process_open_fds, _max_fds, CPU, memory (Linux /proc)
        for u in daemon.uplinks:
            self.reaction.labels(u.name)  # present (at zero) before the first switch
        self._app = make_asgi_app(self.registry)
        self.server: BoundedServer | None = None

    def observe_reaction(self, uplink: str, seconds: float) -> None:
        self.reaction.labels(uplink).observe(seconds)

    async def exposition(self, accept: str = "", accept_encoding: str = "", query: bytes = b"") -> Response:
        """What ``GET /metrics`` answers, from prometheus_client's own exposition (run on this loop)."""
        await self._read_devices()
        scope = {"type": "http", "query_string": query,
                 "headers": [(b"accept", accept.encode()), (b"accept-encoding", accept_encoding.encode())]}
        reply: dict[str, Any] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            reply.update(message)

        await self._app(scope, receive, send)
        headers = tuple((k.decode(), v.decode()) for k, v in reply.get("headers", ()))
        return Response(int(reply.get("status", 500)), reply.get("body", b""), headers)

    async def _read_devices(self) -> None:
        """Gateway and link devices (uplinks keep theirs fresh): per-peer bytes and handshakes."""
        d = self.daemon
        wanted = [(d.gateway.backend, d.gateway.config.interface)] if d.gateway is not None else []
        wanted += [dev for link in d.links.values() for dev in link.devices()]
        self.devices.clear()
        for backend, ifname in wanted:
            try:
                self.devices[ifname] = await asyncio.wait_for(backend.read(ifname), DEVICE_READ_TIMEOUT)
            except Exception:  # gone, restarting, not ours yet: the peer's series pause, the scrape goes on
                continue

    async def serve(self, listen: str) -> BoundedServer:
        """Serve ``/metrics`` and ``/mesh`` on ``listen``; MeshctlError if the address cannot be bound."""
        host, port = parse_listen(listen)
        server = BoundedServer(self._handle)
        try:
            await server.start(host, port)
        except OSError as exc:
            raise MeshctlError(f"metrics: cannot listen on {listen}: {exc.strerror}") from None
        log.info("metrics: serving http://%s/metrics and the mesh map at http://%s/mesh", listen, listen)
        self.server = server
        return server

    async def _handle(self, request: Request) -> Response:
        if request.path == "/metrics":
            return await self.exposition(request.header("accept"), request.header("accept-encoding"), request.query)
        if request.path == "/mesh":
            from meshctl.topology.html import mesh_page  # the page, when someone asks for it

            return Response(200, mesh_page(None, live="mesh.json").encode(), PAGE_HEADERS)
        if request.path == "/mesh.json":
            from meshctl.topology.export import mesh_to_netjson  # the exporters, when someone asks for the map

            body = json.dumps(mesh_to_netjson(self.daemon.mesh()), indent=1).encode()
            return Response(200, body, (("Content-Type", "application/json"), ("Cache-Control", "no-store")))
        return Response(404, b"see /metrics or /mesh\n", (("Content-Type", "text/plain"),))


#: The page runs its own inline script and fetches only /mesh.json from this listener, nothing else.
PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; img-src data:"),
    ("Cache-Control", "no-store"),
)
