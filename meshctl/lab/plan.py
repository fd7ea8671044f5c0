"""Turn a :class:`LabSpec` into a concrete, deterministic plan, without I/O.

Everything a lab needs is derived here: namespace and interface names,
addresses, ports, router ids and each node's babeld.conf.  The runner only
executes the plan, and ``lab down`` can recompute it to find what to remove.

Naming: WireGuard's UAPI sockets live in one directory shared by every
network namespace, so every interface name carries the lab's tag, which must
be unique on the machine.  Interface names stay within Linux's 15 bytes.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from meshctl.lab.spec import GOSSIP_LIFETIME, LabSpec, NodeSpec
from meshctl.links.plan import gossip_interface

RUN_ROOT = "/run/meshctl/lab"
BASE_PORT = 51820
UPLINK_PORT = 51900  # a client's uplink interface
GATEWAY_PORT = 51901  # a gateway's server interface
CONTROL_PORT = 51902  # meshctl's probes, inside the uplink tunnels
CLIENT_NET = ipaddress.IPv4Network("10.98.0.0/24")  # client N's uplink address: 10.98.0.N
GATEWAY_NET = ipaddress.IPv4Network("10.97.0.0/24")  # gateway N's uplink address: 10.97.0.N
CLIENT_NET6 = ipaddress.IPv6Network("fd98::/64")  # ... and fd98::N when it steers IPv6
GATEWAY_NET6 = ipaddress.IPv6Network("fd97::/64")  # ... fd97::N with IPv6 control
STEER_TABLE = 100  # routing table for steered prefixes on clients
#: Kernel route protocol number for routes meshctl installs for Babel to
#: redistribute (e.g. a client's address on the gateway it chose).
MESHCTL_RTPROTO = 152
#: ... and for a standby announcement, redistributed with a high metric so the
#: mesh keeps using the current gateway until the client has switched.
MESHCTL_STANDBY_RTPROTO = 153
STANDBY_METRIC = 8192
#: A client announces its own uplink addresses into Babel, at the metric a gateway announces them with
#: (0): the mesh routes them by the shortest path, through the chosen gateway's tunnel where that is
#: shorter, over Babel links where not, and no gateway's failure or release takes that way away.  At a
#: higher metric (4096 was tried) routers fell back to it only when a gateway let go, and the mesh
#: re-converged onto it across sources, with transient loops between relays (traced).

MANAGED_BASE_PORT = 52000  # + the peer's index: a managed tunnel's listen port
MANAGED_KEEPALIVE = 1  # seconds: a dead path shows within a few
MANAGED_DEAD_AFTER = 4.0
MANAGED_HELLO = 0.5  # seconds: babeld's hello interval on managed tunnels, unless the link says
MANAGED_PATH_BASE_PORT = 53000  # + 10 x the peer's index + the path: a per-path tunnel's listen port
MANAGED_GOSSIP_BASE_PORT = 54000  # + 10 x the peer's index + k: the tunnel for the k-th advertised address
METRICS_LISTEN = "[::1]:9474"  # every node has its own loopback, so one port serves all


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    """One end of a point-to-point WireGuard tunnel."""

    ifname: str
    peer: str
    peer_ifname: str
    listen_port: int
    endpoint: str  # peer's underlay address and port
    local_ll: ipaddress.IPv6Interface
    peer_ll: ipaddress.IPv6Address
    rxcost: int | None


@dataclass(frozen=True, slots=True)
class ManagedLinkPlan:
    """One end of a tunnel that the node's meshctl daemon creates (link automation)."""

    ifname: str
    peer: str
    listen_port: int
    endpoints: tuple[str, ...]  # the peer's underlay address on each path, with its port
    per_path: bool = False  # one tunnel per path (then ``path_ifnames``, ``path_ports``, ``costs`` per path)
    path_ifnames: tuple[str, ...] = ()
    path_ports: tuple[int, ...] = ()
    costs: tuple[int | None, ...] = ()
    hello_interval: float = MANAGED_HELLO
    gossip_ifnames: tuple[str, ...] = ()  # tunnels for the addresses the second node advertises in gossip
    gossip_listen: int = 0  # their first port here ...
    gossip_port: int = 0  # ... and at the other end
    advertise: tuple[str, ...] = ()  # this end's addresses for them, advertised in its [gossip] endpoints

    @property
    def ifnames(self) -> tuple[str, ...]:
        """Every interface this link's tunnels have at this end."""
        return (*self.path_ifnames, *self.gossip_ifnames) if self.per_path else (self.ifname,)


@dataclass(frozen=True, slots=True)
class VethPlan:
    """One end of an underlay veth pair."""

    ifname: str
    address: ipaddress.IPv4Interface
    peer: str
    address6: ipaddress.IPv6Interface | None = None  # with an IPv6 underlay

@dataclass(frozen=True, slots=True)
class UplinkGatewayPlan:
    """One gateway as a client's uplink sees it."""

    name: str
    ifname: str  # the gateway's server interface
    control: ipaddress.IPv4Address | ipaddress.IPv6Address
    endpoint: str  # gateway's underlay address on the shared link, and its server port
    mesh: ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    """A client's uplink interface."""

    ifname: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    steer: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    gateways: tuple[UplinkGatewayPlan, ...]
    margin: int
    hold: float
    probe_interval: float
    backup_probe_interval: float | None = None
    probe_loss: int = 3
    check: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    check_interval: float = 0.2

    @property
    def address(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        """The IPv4 address (every lab client has one)."""
        return self.addresses[0]

    def address_of(self, family: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        return next((a for a in self.addresses if a.version == family), None)


@dataclass(frozen=True, slots=True)
class ServedClientPlan:
    """A client a gateway serves."""

    name: str
    uplink_ifname: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    mesh: ipaddress.IPv4Network  # the client's own mesh address: where a released gateway hands replies


@dataclass(frozen=True, slots=True)
class NodePlan:
    """Everything about one node."""

    name: str
    index: int
    namespace: str
    router_id: str
    mesh4: ipaddress.IPv4Interface
    mesh6: ipaddress.IPv6Interface
    announce: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    roles: tuple[str, ...]
    tunnels: tuple[TunnelPlan, ...]
    veths: tuple[VethPlan, ...]
    run_dir: str
    babeld_conf: str
    uplink: UplinkPlan | None = None
    gateway_ifname: str | None = None
    gateway_address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    served: tuple[ServedClientPlan, ...] = ()
    daemon: bool = False
    managed: tuple[ManagedLinkPlan, ...] = ()

    @property
    def control_socket(self) -> str:
        """The node's meshctl daemon control socket."""
        return os.path.join(self.run_dir, "meshctl.sock")

    @property
    def daemon_pid_file(self) -> str:
        """Where the lab's supervisor keeps the running daemon's PID."""
        return os.path.join(self.run_dir, "meshctl.pid")

    @property
    def metrics(self) -> str:
        """Where the node's daemon serves Prometheus metrics (inside its own namespace)."""
        return METRICS_LISTEN

    @property
    def config_path(self) -> str:
        """The node's meshctl config."""
        return os.path.join(self.run_dir, "node.toml")

    @property
    def babel_socket(self) -> str:
        """babeld's read-write local socket (a unix path: reachable from any namespace)."""
        return os.path.join(self.run_dir, "babel.sock")

    @property
    def prefixes(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Every prefix this node announces into Babel."""
        return (self.mesh4.network, self.mesh6.network, *(a.network for a in self.announce))


@dataclass(frozen=True, slots=True)
class LabPlan:
    """The whole lab."""

    name: str
    tag: str
    run_dir: str
    nodes: tuple[NodePlan, ...]
    gossip_lifetime: float = GOSSIP_LIFETIME

    def node(self, name: str) -> NodePlan:
        """The node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace, in node order."""
        return tuple(n.namespace for n in self.nodes)

    @property
    def wireguard_interfaces(self) -> tuple[str, ...]:
        """Every WireGuard interface (machine-wide unique names)."""
        out = [t.ifname for n in self.nodes for t in n.tunnels]
        out += [n.uplink.ifname for n in self.nodes if n.uplink]
        out += [n.gateway_ifname for n in self.nodes if n.gateway_ifname]
        out += [i for n in self.nodes for m in n.managed for i in m.ifnames]
        return tuple(out)


def router_id(index: int) -> str:
    """A fixed router id per node (babeld's default is random on veth/tun hosts)."""
    return f"02:6d:63:6c:00:00:{index >> 8:02x}:{index & 0xFF:02x}"


def tunnel_name(tag: str, i: int, j: int) -> str:
    """Name of node ``i``'s tunnel toward node ``j``."""
    return f"{tag}w{i}-{j}"


def placeholder_name(tag: str, i: int) -> str:
    """A dummy interface for a babeld that has no lab tunnel to start on."""
    return f"{tag}d{i}"


def veth_name(tag: str, i: int, j: int) -> str:
    """Name of node ``i``'s underlay veth toward node ``j``."""
    return f"{tag}v{i}-{j}"


def babeld_conf(node: NodeSpec, plan_node: dict, run_dir: str) -> str:
    """babeld.conf for one node.

    The redistribute filters allow exactly this node's mesh addresses and
    announced prefixes, then deny every other local address: the underlay
    addresses are WireGuard endpoints, and a host route to an endpoint
    through its own tunnel kills the mesh within a minute.
    """
    b = node.babel
    lines = [
        f"# babeld.conf for lab node {node.name}, written by meshctl lab; do not edit",
        f"router-id {plan_node['router_id']}",
        f"local-path-readwrite {os.path.join(run_dir, 'babel.sock')}",
        f"pid-file {os.path.join(run_dir, 'babeld.pid')}",
        f"state-file {os.path.join(run_dir, 'babel-state')}",
    ]
    if plan_node.get("placeholder"):
        # babeld refuses to start on no interface; the managed tunnels come later, from meshctl.
        lines.append(f"interface {plan_node['placeholder']} type wired")
    for t in plan_node["tunnels"]:
        rx = f" rxcost {t.rxcost}" if t.rxcost is not None else ""
        lines.append(f"interface {t.ifname} type {b.link_type} hello-interval {b.hello_interval:g}{rx}")
    lines.extend(b.extra)
    lines.append("# announce this node's own addresses and prefixes, nothing else")
    for addr in (plan_node["mesh4"], plan_node["mesh6"], *node.announce):
        host = ipaddress.ip_network(f"{addr.ip}/{addr.max_prefixlen}")
        lines.append(f"redistribute local ip {host} allow")
        if addr.network.prefixlen < addr.max_prefixlen:
            lines.append(f"redistribute ip {addr.network} eq {addr.network.prefixlen} allow")
    for addr in plan_node.get("uplink_addresses", ()):
        lines.append(f"redistribute local ip {addr.ip}/{addr.max_prefixlen} allow")  # metric 0, as a gateway's
    lines.append(f"redistribute proto {MESHCTL_RTPROTO} allow")
    lines.append(f"redistribute proto {MESHCTL_STANDBY_RTPROTO} metric {STANDBY_METRIC}")
    lines.append("# never the underlay: WireGuard endpoints must not be routed into their own tunnels")
    lines.append("redistribute local deny")
    lines.append("redistribute deny")
    return "\n".join(lines) + "\n"


def make_plan(spec: LabSpec, tag: str | None = None, run_root: str = RUN_ROOT) -> LabPlan:
    """Derive the full plan.  ``tag`` overrides the file's (tests use unique tags)."""
    tag = tag or spec.tag
    run_dir = os.path.join(run_root, tag)
    index = {n.name: i + 1 for i, n in enumerate(spec.nodes)}
    links = list(spec.underlay.subnets(new_prefix=30))
    links6 = list(spec.underlay6.subnets(new_prefix=64)) if spec.underlay6 else []
    tunnels: dict[str, list[TunnelPlan]] = {n.name: [] for n in spec.nodes}
    veths: dict[str, list[VethPlan]] = {n.name: [] for n in spec.nodes}
    managed: dict[str, list[ManagedLinkPlan]] = {n.name: [] for n in spec.nodes}
    extra = len(spec.links)  # extra paths take the subnets after one per link
    for k, link in enumerate(spec.links):
        i, j = index[link.a], index[link.b]
        subnets = [links[k]]
        numbers = [k]
        for _ in range(link.paths - 1):
            subnets.append(links[extra])
            numbers.append(extra)
            extra += 1
        per_path = []
        for p, subnet in enumerate(subnets):
            hosts = list(subnet.hosts())
            addr = {link.a: ipaddress.IPv4Interface(f"{hosts[0]}/30"), link.b: ipaddress.IPv4Interface(f"{hosts[1]}/30")}
            per_path.append(addr)
            addr6: dict[str, ipaddress.IPv6Interface | None] = {link.a: None, link.b: None}
            if links6:
                net6 = links6[numbers[p]]
                addr6 = {link.a: ipaddress.IPv6Interface(f"{net6[1]}/64"), link.b: ipaddress.IPv6Interface(f"{net6[2]}/64")}
            for me, other, mi, oi in ((link.a, link.b, i, j), (link.b, link.a, j, i)):
                suffix = f"p{p}" if p else ""
                veths[me].append(VethPlan(veth_name(tag, mi, oi) + suffix, addr[me], other, addr6[me]))
        addr = per_path[0]
        underlay_of = {v.ifname: v for v in veths[link.a] + veths[link.b]}
        first = {me: underlay_of[veth_name(tag, mi, oi)] for me, mi, oi in ((link.a, i, j), (link.b, j, i))}

        def endpoint(node: str, port: int, first: dict[str, VethPlan] = first) -> str:
            """A node's end of this link, as a WireGuard endpoint: over the IPv6 underlay when there is one."""
            v = first[node]
            return f"[{v.address6.ip}]:{port}" if v.address6 is not None else f"{v.address.ip}:{port}"

        for me, other, mi, oi in ((link.a, link.b, i, j), (link.b, link.a, j, i)):
            if link.managed and link.per_path:
                configured = 1 if link.gossip_paths else link.paths
                learnt = per_path[configured:]
                managed[me].append(ManagedLinkPlan(
                    f"{tag}m{mi}-{oi}", other, 0,
                    tuple(f"{a[other].ip}:{MANAGED_PATH_BASE_PORT + 10 * mi + p}"
                          for p, a in enumerate(per_path[:configured])),
                    per_path=True,
                    path_ifnames=tuple(f"{tag}m{mi}-{oi}p{p}" for p in range(configured)),
                    path_ports=tuple(MANAGED_PATH_BASE_PORT + 10 * oi + p for p in range(configured)),
                    costs=(link.costs or (None,) * link.paths)[:configured],
                    hello_interval=link.hello_interval or MANAGED_HELLO,
                    gossip_ifnames=tuple(gossip_interface(f"{tag}m{mi}-{oi}", k) for k in range(len(learnt))),
                    gossip_listen=MANAGED_GOSSIP_BASE_PORT + 10 * oi if learnt else 0,
                    gossip_port=MANAGED_GOSSIP_BASE_PORT + 10 * mi if learnt else 0,
                    advertise=tuple(f"{a[me].ip}:{MANAGED_GOSSIP_BASE_PORT}" for a in learnt) if me == link.b else (),
                ))
                continue
            if link.managed:
                managed[me].append(ManagedLinkPlan(
                    f"{tag}m{mi}-{oi}", other, MANAGED_BASE_PORT + oi,
                    tuple(f"{a[other].ip}:{MANAGED_BASE_PORT + mi}" for a in per_path),
                    hello_interval=link.hello_interval or MANAGED_HELLO,
                ))
                continue
            tunnels[me].append(
                TunnelPlan(
                    ifname=tunnel_name(tag, mi, oi),
                    peer=other,
                    peer_ifname=tunnel_name(tag, oi, mi),
                    listen_port=BASE_PORT + oi,
                    endpoint=endpoint(other, BASE_PORT + mi),
                    local_ll=ipaddress.IPv6Interface(f"fe80::{mi:x}/64"),
                    peer_ll=ipaddress.IPv6Address(f"fe80::{oi:x}"),
                    rxcost=link.rxcost,
                )
            )
    uplinks: dict[str, UplinkPlan] = {}
    served: dict[str, list[ServedClientPlan]] = {n.name: [] for n in spec.nodes}
    control_family: dict[str, int] = {}  # gateway -> the family of its control address
    for up in spec.uplinks:
        ci = index[up.client]
        client_addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = [
            ipaddress.IPv4Interface(f"{CLIENT_NET[ci]}/32")]
        if any(p.version == 6 for p in up.steer) or up.control_family == 6:
            client_addresses.append(ipaddress.IPv6Interface(f"{CLIENT_NET6[ci]}/128"))
        gws = []
        for gw in up.gateways:
            gi = index[gw]
            direct = next((k for k, lk in enumerate(spec.links) if {lk.a, lk.b} == {up.client, gw}), None)
            if direct is not None:  # a direct link: the gateway's underlay address on it
                v = next(v for v in veths[gw] if v.peer == up.client)
                gw_address = f"[{v.address6.ip}]" if v.address6 is not None else str(v.address.ip)
            else:  # further away: its mesh address, which Babel routes through the tunnels between
                gw_address = f"[{spec.mesh6[gi]}]" if spec.underlay6 else str(spec.mesh4[gi])
            control_family[gw] = up.control_family
            control = GATEWAY_NET6[gi] if up.control_family == 6 else GATEWAY_NET[gi]
            gws.append(UplinkGatewayPlan(gw, f"{tag}g{gi}", control, f"{gw_address}:{GATEWAY_PORT}",
                                         ipaddress.IPv4Network(f"{spec.mesh4[gi]}/32")))
            served[gw].append(ServedClientPlan(up.client, f"{tag}u{ci}", tuple(client_addresses),
                                               ipaddress.IPv4Network(f"{spec.mesh4[ci]}/32")))
        uplinks[up.client] = UplinkPlan(f"{tag}u{ci}", tuple(client_addresses), up.steer,
                                        tuple(gws), up.margin, up.hold, up.probe_interval, up.backup_probe_interval,
                                        up.probe_loss, up.check, up.check_interval)
    nodes = []
    for n in spec.nodes:
        i = index[n.name]
        node_dir = os.path.join(run_dir, n.name)
        info: dict[str, Any] = {
            "router_id": router_id(i),
            "mesh4": ipaddress.IPv4Interface(f"{spec.mesh4[i]}/32"),
            "mesh6": ipaddress.IPv6Interface(f"{spec.mesh6[i]}/128"),
            "tunnels": tunnels[n.name],
            "placeholder": placeholder_name(tag, i) if not tunnels[n.name] else None,
            "uplink_addresses": uplinks[n.name].addresses if n.name in uplinks else (),
        }
        is_gateway = bool(served[n.name])
        nodes.append(
            NodePlan(
                name=n.name,
                index=i,
                namespace=f"{tag}-{n.name}",
                router_id=info["router_id"],
                mesh4=info["mesh4"],
                mesh6=info["mesh6"],
                announce=n.announce,
                roles=n.roles,
                tunnels=tuple(tunnels[n.name]),
                veths=tuple(veths[n.name]),
                run_dir=node_dir,
                babeld_conf=babeld_conf(n, info, node_dir),
                uplink=uplinks.get(n.name),
                gateway_ifname=f"{tag}g{i}" if is_gateway else None,
                gateway_address=(ipaddress.IPv6Interface(f"{GATEWAY_NET6[i]}/128") if control_family.get(n.name) == 6
                                 else ipaddress.IPv4Interface(f"{GATEWAY_NET[i]}/32")) if is_gateway else None,
                served=tuple(served[n.name]),
                daemon=spec.daemons,
                managed=tuple(managed[n.name]),
            )
        )
    return LabPlan(spec.name, tag, run_dir, tuple(nodes), spec.gossip_lifetime)


def node_config(node: NodePlan, plan: LabPlan, public_keys: dict[str, str], secret_file: str,
                gossip_keys: dict[str, str] | None = None, link_keys: dict[str, str] | None = None) -> str:
    """The meshctl node config for a lab node (keys are files, never inline)."""
    lines = [
        f"# meshctl config for lab node {node.name}, written by meshctl lab",
        "[node]",
        f'name = "{node.name}"',
        f'babel = "unix:{node.babel_socket}"',
        f'control_socket = "{node.control_socket}"',
        f'metrics = "{node.metrics}"',
    ]
    if node.uplink:
        up = node.uplink
        lines += [
            "",
            "[[uplink]]",
            f'interface = "{up.ifname}"',
            f'private_key_file = "{os.path.join(node.run_dir, up.ifname + ".key")}"',
            f"listen_port = {UPLINK_PORT}",
            "address = [" + ", ".join(f'"{a}"' for a in up.addresses) + "]",
            "steer = [" + ", ".join(f'"{p}"' for p in up.steer) + "]",
            f'secret_file = "{secret_file}"',
            f"control_port = {CONTROL_PORT}",
            f"probe_interval = {up.probe_interval}",
            f"probe_loss = {up.probe_loss}",
        ]
        if up.backup_probe_interval is not None:
            lines.append(f"backup_probe_interval = {up.backup_probe_interval}")
        if up.check:
            lines += ["check = [" + ", ".join(f'"{c}"' for c in up.check) + "]", f"check_interval = {up.check_interval}"]
        lines += [
            "",
            "[uplink.hysteresis]",
            f"margin = {up.margin}",
            f"hold = {up.hold}",
        ]
        for gw in up.gateways:
            lines += [
                "",
                "[[uplink.gateway]]",
                f'name = "{gw.name}"',
                f'public_key = "{public_keys[gw.ifname]}"',
                f'endpoint = "{gw.endpoint}"',
                f'control = "{gw.control}"',
                f'mesh = "{gw.mesh}"',
            ]
    if node.gateway_ifname and node.gateway_address:
        lines += [
            "",
            "[gateway]",
            f'interface = "{node.gateway_ifname}"',
            f'private_key_file = "{os.path.join(node.run_dir, node.gateway_ifname + ".key")}"',
            f"listen_port = {GATEWAY_PORT}",
            f'address = "{node.gateway_address}"',
            f'secret_file = "{secret_file}"',
            f"control_port = {CONTROL_PORT}",
            f"route_protocol = {MESHCTL_RTPROTO}",
            f"standby_protocol = {MESHCTL_STANDBY_RTPROTO}",
        ]
        for c in node.served:
            lines += [
                "",
                "[[gateway.client]]",
                f'name = "{c.name}"',
                f'public_key = "{public_keys[c.uplink_ifname]}"',
                "addresses = [" + ", ".join(f'"{a.network}"' for a in c.addresses) + "]",
                f'mesh = "{c.mesh}"',
            ]
    if node.managed and link_keys:
        lines += [
            "",
            "[links]",
            f'private_key_file = "{os.path.join(node.run_dir, "links.key")}"',
            f"keepalive = {MANAGED_KEEPALIVE}",
            f"dead_after = {MANAGED_DEAD_AFTER}",
            f'babel = "type tunnel hello-interval {MANAGED_HELLO:g}"',
        ]
        for m in node.managed:
            lines += ["", "[[links.neighbour]]", f'name = "{m.peer}"', f'public_key = "{link_keys[m.peer]}"']
            if m.gossip_ifnames:
                lines += ['from_gossip = "paths"', f'interface = "{m.ifname}"', f"listen_port = {m.gossip_listen}",
                          f"port = {m.gossip_port}", f'babel = "type tunnel hello-interval {m.hello_interval:g}"']
            if not m.per_path:
                lines += [
                    "endpoints = [" + ", ".join(f'"{e}"' for e in m.endpoints) + "]",
                    f'interface = "{m.ifname}"',
                    f"listen_port = {m.listen_port}",
                ]
                if m.hello_interval != MANAGED_HELLO:
                    lines.append(f'babel = "type tunnel hello-interval {m.hello_interval:g}"')
            for ifname, port, endpoint, cost in zip(m.path_ifnames, m.path_ports, m.endpoints if m.per_path else (),
                                                    m.costs, strict=True):
                lines += ["", "[[links.neighbour.path]]", f'interface = "{ifname}"', f"listen_port = {port}",
                          f'endpoint = "{endpoint}"', f'babel = "type tunnel hello-interval {m.hello_interval:g}"']
                if cost is not None:
                    lines.append(f"rxcost = {cost}")
    if gossip_keys:
        lines += [
            "",
            "[gossip]",
            f'private_key_file = "{os.path.join(node.run_dir, "gossip.key")}"',
            f"lifetime = {plan.gossip_lifetime:g}",
        ]
        advertised = [e for m in node.managed for e in m.advertise]
        if advertised:
            lines.append("endpoints = [" + ", ".join(f'"{e}"' for e in advertised) + "]")
        for name, key in sorted(gossip_keys.items()):
            lines += ["", "[[gossip.trust]]", f'name = "{name}"', f'public_key = "{key}"']
    return "\n".join(lines) + "\n"
