"""Lab topology files (``topologies/*.toml``): loading and validation.

A topology names nodes and underlay links; everything else (addresses,
interface names, keys, babeld config) is derived by ``meshctl.lab.plan``.
See ``topologies/README.md`` for the format.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from meshctl.config import GOSSIP_LIFETIMES
from meshctl.errors import ConfigError
from meshctl.tomlfile import Fields, load_toml, with_lines

_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_TAG = re.compile(r"^[a-z][a-z0-9]{0,5}$")
ROLES = ("client", "gateway", "upstream", "router")
MAX_NODES = 99  # two digits in interface names
#: A lab's gossip lifetime (meshctl's own default is 60 s): a stopped lab node leaves every view within it.
GOSSIP_LIFETIME = 10.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BabelOptions:
    """babeld settings shared by every node of a lab (overridable per node)."""

    hello_interval: float = 1.0
    link_type: str = "tunnel"
    extra: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the lab."""

    name: str
    roles: tuple[str, ...] = ("router",)
    announce: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()
    babel: BabelOptions = field(default_factory=BabelOptions)


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One underlay link between two nodes (and the tunnel over it)."""

    a: str
    b: str
    rxcost: int | None = None
    managed: bool = False  # the tunnel is meshctl's (link automation), not the lab's
    paths: int = 1  # underlay veth pairs between the two: a managed tunnel's endpoints
    per_path: bool = False  # managed: one tunnel per path, Babel chooses (else one tunnel that moves)
    costs: tuple[int, ...] = ()  # managed, per path: babeld rxcost on that path's tunnel, at both ends
    hello_interval: float | None = None  # managed: babeld's hello interval on its tunnels (default 0.5 s)
    gossip_paths: bool = False  # per_path: path 0 configured, the others learnt from the second node's gossip


@dataclass(frozen=True, slots=True)
class UplinkSpec:
    """A client's uplink: one WireGuard interface, one peer per gateway (issue #4)."""

    client: str
    gateways: tuple[str, ...]
    steer: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    margin: int = 32
    hold: float = 3.0
    probe_interval: float = 0.1
    backup_probe_interval: float | None = None  # None: as probe_interval
    probe_loss: int = 3
    check: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()  # end-to-end targets behind the gateways
    check_interval: float = 0.2
    control_family: int = 4  # the family of the gateways' control addresses (probes and acks)


@dataclass(frozen=True, slots=True)
class LabSpec:
    """A whole topology file."""

    name: str
    tag: str
    description: str
    mesh4: ipaddress.IPv4Network
    mesh6: ipaddress.IPv6Network
    underlay: ipaddress.IPv4Network
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    source: str = ""
    uplinks: tuple[UplinkSpec, ...] = ()
    daemons: bool = False
    underlay6: ipaddress.IPv6Network | None = None  # with it, tunnels and uplinks run over an IPv6 underlay
    gossip_lifetime: float = GOSSIP_LIFETIME  # the daemons' [gossip] lifetime

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def _network(f: Fields, key: str, default: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = f.take(key, str, default)
    try:
        net = ipaddress.ip_network(text)
    except ValueError as exc:
        f.error(key, f"not a network: {exc}")
        return ipaddress.ip_network(default)
    if net.version != version:
        f.error(key, f"must be an IPv{version} network")
        return ipaddress.ip_network(default)
    return net


def _babel(f: Fields, base: BabelOptions) -> BabelOptions:
    hello = f.take("hello_interval", float, base.hello_interval)
    if not 0.01 <= hello <= 60:
        f.error("hello_interval", "must be between 0.01 and 60 seconds")
        hello = base.hello_interval
    link_type = f.take("type", str, base.link_type)
    if link_type not in ("tunnel", "wired", "wireless"):
        f.error("type", "must be tunnel, wired or wireless")
        link_type = base.link_type
    extra = tuple(f.take_list("extra", str, list(base.extra)))
    for i, line in enumerate(extra):
        if "\n" in line:
            f.error(f"extra[{i}]", "must be a single line")
    f.finish()
    return BabelOptions(hello, link_type, extra)


def _parsed_list(f: Fields, key: str, parse: Callable[[str], T], what: str) -> list[T]:
    """A list of strings, each parsed; an element that does not parse is an error naming its index."""
    out = []
    for j, text in enumerate(f.take_list(key, str, [])):
        try:
            out.append(parse(text))
        except ValueError as exc:
            f.error(f"{key}[{j}]", f"{what}: {exc}")
    return out


def parse_lab(data: dict, source: str = "<topology>") -> LabSpec:
    """Validate a parsed topology; raise one :class:`ConfigError` listing every problem."""
    errors: list[ConfigError] = []
    top = Fields(data, "", source, errors)
    lab = Fields(top.take("lab", dict, {}, required=True), "lab", source, errors)
    name = lab.take("name", str, "lab", required=True)
    if not _NAME.match(name):
        lab.error("name", "must be 1-12 lowercase letters/digits, starting with a letter")
    tag = lab.take("tag", str, name[:6])
    if not _TAG.match(tag):
        lab.error("tag", "must be 1-6 lowercase letters/digits, starting with a letter (it prefixes interface names)")
    description = lab.take("description", str, "")
    mesh4 = ipaddress.IPv4Network(_network(lab, "mesh4", "10.99.0.0/24", 4))
    mesh6 = ipaddress.IPv6Network(_network(lab, "mesh6", "fd99::/64", 6))
    underlay = ipaddress.IPv4Network(_network(lab, "underlay", "10.250.0.0/16", 4))
    underlay6 = None
    if isinstance(data.get("lab"), dict) and "underlay6" in data["lab"]:
        underlay6 = ipaddress.IPv6Network(_network(lab, "underlay6", "fd25::/48", 6))
        if underlay6.prefixlen > 56:
            lab.error("underlay6", "must be /56 or shorter (a /64 per link path)")
    daemons = lab.take("daemons", bool, False)
    gossip_lifetime = lab.take("gossip_lifetime", float, GOSSIP_LIFETIME)
    if not GOSSIP_LIFETIMES[0] <= gossip_lifetime <= GOSSIP_LIFETIMES[1]:  # the daemons must take it
        lab.error("gossip_lifetime", "must be {:g}..{:g} seconds (as [gossip] lifetime)".format(*GOSSIP_LIFETIMES))
    lab.finish()

    babel = _babel(Fields(top.take("babel", dict, {}), "babel", source, errors), BabelOptions())

    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(top.take("node", list, [], required=True)):
        f = Fields(raw, f"node[{i}]", source, errors)
        node_name = f.take("name", str, f"node{i}", required=True)
        if not _NAME.match(node_name):
            f.error("name", "must be 1-12 lowercase letters/digits, starting with a letter")
        if node_name in seen:
            f.error("name", f"duplicate node name {node_name!r}")
        seen.add(node_name)
        roles = tuple(f.take_list("roles", str, ["router"]))
        for j, role in enumerate(roles):
            if role not in ROLES:
                f.error(f"roles[{j}]", f"unknown role {role!r} (known: {', '.join(ROLES)})")
        announce = _parsed_list(f, "announce", ipaddress.ip_interface, "not an address/prefix")
        node_babel = babel
        if isinstance(raw, dict) and "babel" in raw:
            node_babel = _babel(Fields(f.take("babel", dict, {}), f"node[{i}].babel", source, errors), babel)
        f.finish()
        nodes.append(NodeSpec(node_name, roles, tuple(announce), node_babel))
    if len(nodes) > MAX_NODES:
        top.error("node", f"at most {MAX_NODES} nodes")
    if len(nodes) > mesh4.num_addresses - 2:
        lab.error("mesh4", f"too small for {len(nodes)} nodes")

    links: list[LinkSpec] = []
    pairs: set[frozenset[str]] = set()
    for i, raw in enumerate(top.take("link", list, [])):
        f = Fields(raw, f"link[{i}]", source, errors)
        ends = f.take_list("nodes", str, [], required=True)
        rxcost = f.take("rxcost", int, None)
        managed = f.take("managed", bool, False)
        paths = f.take("paths", int, 1)
        if not 1 <= paths <= 4:
            f.error("paths", "must be 1..4")
        if paths > 1 and not managed:
            f.error("paths", "several underlay paths need managed = true (a lab tunnel uses the first only)")
        per_path = f.take("per_path", bool, False)
        costs = tuple(f.take_list("costs", int, []))
        hello = f.take("hello_interval", float, None)
        gossip_paths = f.take("gossip_paths", bool, False)
        if gossip_paths and (not per_path or paths < 2):
            f.error("gossip_paths", "needs per_path = true and paths >= 2 (path 0 is configured, the rest learnt)")
        if (per_path or costs or hello is not None) and not managed:
            f.error("per_path" if per_path else "costs" if costs else "hello_interval", "only for managed = true links")
        if costs and (len(costs) != paths or not per_path):
            f.error("costs", f"one rxcost per path ({paths}), with per_path = true")
        if any(not 1 <= c < 65535 for c in costs):
            f.error("costs", "each must be 1..65534")
        if hello is not None and not 0.01 <= hello <= 60:
            f.error("hello_interval", "must be between 0.01 and 60 seconds")
        f.finish()
        if len(ends) != 2:
            f.error("nodes", "must name exactly two nodes")
            continue
        if ends[0] == ends[1]:
            f.error("nodes", "a link needs two different nodes")
            continue
        for end in ends:
            if end not in seen:
                f.error("nodes", f"unknown node {end!r}")
        if frozenset(ends) in pairs:
            f.error("nodes", f"duplicate link {ends[0]}-{ends[1]}")
        pairs.add(frozenset(ends))
        if rxcost is not None and not 1 <= rxcost < 65535:
            f.error("rxcost", "must be 1..65534")
        links.append(LinkSpec(ends[0], ends[1], rxcost, managed, paths, per_path, costs, hello, gossip_paths))

    uplinks: list[UplinkSpec] = []
    clients: set[str] = set()
    for i, raw in enumerate(top.take("uplink", list, [])):
        f = Fields(raw, f"uplink[{i}]", source, errors)
        client = f.take("client", str, "", required=True)
        gateways = tuple(f.take_list("gateways", str, [], required=True))
        steer = []
        for j, text in enumerate(f.take_list("steer", str, [], required=True)):
            try:
                steer.append(ipaddress.ip_network(text))
            except ValueError as exc:
                f.error(f"steer[{j}]", f"not a prefix: {exc}")
        margin = f.take("margin", int, 32)
        hold = f.take("hold", float, 3.0)
        probe_interval = f.take("probe_interval", float, 0.1)
        backup_probe_interval = f.take("backup_probe_interval", float, None)
        probe_loss = f.take("probe_loss", int, 3)
        check = _parsed_list(f, "check", ipaddress.ip_address, "not an address")
        check_interval = f.take("check_interval", float, 0.2)
        control_family = f.take("control_family", int, 4)
        if control_family not in (4, 6):
            f.error("control_family", "must be 4 or 6")
        for j, c in enumerate(check):
            if not any(c.version == p.version and c in p for p in steer):
                f.error(f"check[{j}]", f"{c} is not inside a steered prefix")
        # The same bounds the node config enforces: refused here, before anything is built.
        if not 0 <= margin < 65535:
            f.error("margin", "must be 0..65534")
        if not 0 <= hold <= 3600:
            f.error("hold", "must be 0..3600 seconds")
        for key, value in (("probe_interval", probe_interval), ("backup_probe_interval", backup_probe_interval),
                           ("check_interval", check_interval)):
            if value is not None and not 0.01 <= value <= 10:
                f.error(key, "must be 0.01..10 seconds")
        if not 1 <= probe_loss <= 100:
            f.error("probe_loss", "must be 1..100")
        f.finish()
        if client not in seen:
            f.error("client", f"unknown node {client!r}")
        if client in clients:
            f.error("client", f"{client!r} has two uplinks; the lab supports one per client")
        clients.add(client)
        if not gateways:
            f.error("gateways", "needs at least one gateway")
        for j, gw in enumerate(gateways):
            if gw not in seen:
                f.error(f"gateways[{j}]", f"unknown node {gw!r}")
            elif gw == client:
                f.error(f"gateways[{j}]", f"{gw!r} is the client itself")
            elif gateways.index(gw) != j:
                f.error(f"gateways[{j}]", f"duplicate gateway {gw!r}")
        # A gateway linked to the client is reached at that link's underlay address;
        # one further away at its mesh address, through the mesh (a tunnel in tunnels).
        uplinks.append(UplinkSpec(client, gateways, tuple(steer), margin, hold, probe_interval, backup_probe_interval,
                                  probe_loss, tuple(check), check_interval, control_family))
    needed = sum(link.paths for link in links)
    if needed > 2 ** (30 - underlay.prefixlen):
        lab.error("underlay", f"{underlay} has room for {2 ** (30 - underlay.prefixlen)} links (a /30 each), "
                  f"the topology needs {needed}")
    top.finish()
    if errors:
        raise ConfigError.collect(errors)
    return LabSpec(name, tag, description, mesh4, mesh6, underlay, tuple(nodes), tuple(links), source,
                   tuple(uplinks), daemons, underlay6, gossip_lifetime)


def load_lab(path: str) -> LabSpec:
    """Load and validate a topology file; every problem names its field and, where it can, its line."""
    try:
        return parse_lab(load_toml(path), path)
    except ConfigError as exc:
        raise with_lines(exc, path) from None
