"""The node config (``/etc/meshctl/node.toml``): loading and validation.

Every problem is reported with its field path (``uplink[0].gateway[1].public_key``)
and the file; keys and secrets are read from files that only their owner
can read.  Validation touches nothing: the daemon runs it before it acts.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshctl.babel.endpoint import DEFAULT_PORT, Endpoint, parse_endpoint
from meshctl.babel.errors import BabelError
from meshctl.beat import answers_after
from meshctl.errors import ConfigError
from meshctl.listen import parse_listen
from meshctl.tomlfile import Fields, load_toml, not_regular, with_lines

if TYPE_CHECKING:  # cryptography is loaded by a config with keys in it only (X25519 for WireGuard, Ed25519 for gossip)
    from meshctl.gossip.signing import SigningKey
    from meshctl.uplink.policy import Hysteresis
    from meshctl.wireguard.keys import KeyPair

DEFAULT_CONFIG = "/etc/meshctl/node.toml"
DEFAULT_CONTROL_SOCKET = "/run/meshctl/meshctl.sock"
DEFAULT_CONTROL_PORT = 51901
DEFAULT_GOSSIP_PORT = 51903
MAX_METRIC = 65535  # Babel metrics are 16 bits; 65535 is unreachable
MAX_HOLD = 3600.0  # seconds; a longer hold is a typo, not a policy
#: The longest wait between reads of babeld's chatter, and the default away from a client's probe beat.
MAX_BABEL_PACE = 0.1
BABEL_PACE = 0.05
SUN_PATH_MAX = 107  # a unix socket path longer than sockaddr_un's sun_path cannot be bound

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GatewayCandidate:
    """One gateway an uplink may use."""

    name: str
    public_key: str
    endpoint: str
    control: ipaddress.IPv4Address | ipaddress.IPv6Address  # its address inside the uplink tunnel
    mesh: Prefix | None  # prefix whose Babel metric ranks it ...
    router_id: str | None  # ... or its router id


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """A client's uplink interface with its candidate gateways."""

    interface: str
    keys: KeyPair
    listen_port: int
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]  # this client, one per family
    steer: tuple[Prefix, ...]
    keepalive: int
    secret: bytes
    control_port: int
    probe_interval: float  # the gateways that carry traffic
    probe_loss: int
    hysteresis: Hysteresis
    gateways: tuple[GatewayCandidate, ...]
    backup_probe_interval: float = 0.1  # the others
    check: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()  # end-to-end targets, one per family
    check_interval: float = 1.0
    check_loss: int = 3

    @property
    def address(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        """The client's first address (the one of the family its control datagrams use, in most configs)."""
        return self.addresses[0]


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """A client a gateway serves."""

    name: str
    public_key: str
    endpoint: str | None
    addresses: tuple[Prefix, ...]
    mesh: Prefix | None = None  # the client's own mesh address, for the handoff route


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """This node as a gateway: its uplink server interface and clients."""

    interface: str
    keys: KeyPair
    listen_port: int
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    secret: bytes
    control_port: int
    lease: float
    route_protocol: int
    standby_protocol: int
    clients: tuple[ClientEntry, ...]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Controller gossip: this node's signing key and the nodes it trusts."""

    key: SigningKey
    port: int
    lifetime: float  # seconds a description lives unless refreshed
    trusted: tuple[tuple[str, str], ...]  # (node name, Ed25519 public key in base64)
    endpoints: tuple[str, ...] = ()  # where new neighbours can reach this node's tunnels, advertised


@dataclass(frozen=True, slots=True)
class PathConfig:
    """One underlay path to a neighbour: a tunnel of its own, a Babel interface of its own."""

    interface: str
    listen_port: int  # our end's UDP port on this path (one per tunnel)
    endpoint: str | None  # the neighbour's ADDRESS:PORT on this path; None: it calls us, WireGuard learns where from
    rxcost: int | None = None  # babeld's rxcost on this tunnel: what the neighbour pays to send to us over it
    babel: str | None = None  # babeld interface options for this path (default: [links] babel)
    fwmark: int = 0  # mark on the tunnel's own UDP packets, for policy routing it out of one uplink


@dataclass(frozen=True, slots=True)
class NeighbourConfig:
    """A neighbour this node keeps tunnels to (link automation).

    With ``paths``, one tunnel per path, and Babel picks among them.  Without,
    one tunnel whose endpoint moves along ``endpoints`` when the neighbour
    falls silent.  ``from_gossip`` adds what the neighbour advertises:
    ``"endpoints"`` to that one tunnel's list, ``"paths"`` one tunnel per
    advertised address (path k: our port ``listen_port + k``, theirs ``port + k``).
    """

    name: str
    public_key: str
    endpoints: tuple[str, ...]
    interface: str
    listen_port: int
    paths: tuple[PathConfig, ...] = ()
    from_gossip: str = ""  # "", "endpoints" or "paths"
    port: int = 0  # the neighbour's port (first port, for gossip paths) at the addresses it advertises
    babel: str | None = None  # babeld interface options for its tunnels (default: [links] babel)

    @property
    def per_path(self) -> bool:
        """One tunnel per path (Babel chooses), not one tunnel that moves."""
        return bool(self.paths) or self.from_gossip == "paths"

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Every interface name this neighbour's tunnels may take."""
        if not self.per_path:
            return (self.interface,)
        from meshctl.links.plan import MAX_PATHS, gossip_interface

        learnt = [gossip_interface(self.interface, k) for k in range(MAX_PATHS)] if self.from_gossip == "paths" else []
        return tuple([p.interface for p in self.paths] + learnt)

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every UDP port this neighbour's tunnels may listen on."""
        if not self.per_path:
            return (self.listen_port,)
        from meshctl.links.plan import MAX_PATHS

        learnt = [self.listen_port + k for k in range(MAX_PATHS)] if self.from_gossip == "paths" else []
        return tuple([p.listen_port for p in self.paths] + learnt)


@dataclass(frozen=True, slots=True)
class LinksConfig:
    """Link automation: the per-neighbour tunnels meshctl creates and babeld runs on."""

    keys: KeyPair
    keepalive: int
    dead_after: float  # seconds without a packet from the neighbour: try its next endpoint
    babel: str  # what follows "interface IFNAME" in the command to babeld
    neighbours: tuple[NeighbourConfig, ...]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The whole node config."""

    name: str
    babel: Endpoint
    control_socket: str
    uplinks: tuple[UplinkConfig, ...]
    gateway: GatewayConfig | None
    source: str = ""
    metrics: str | None = None  # Prometheus listen address, e.g. "[::1]:9474"; None: off
    gossip: GossipConfig | None = None
    links: LinksConfig | None = None
    # Seconds between reads of babeld's repeated chatter (0: read as it comes); None: the probe beat
    # on a client, PACE elsewhere.  At most this much is added to what babeld tells meshctl.
    babel_pace: float | None = None

    def babel_read_pace(self) -> tuple[float, float]:
        """(period, offset) of the grid babeld is read on while it only chatters; period 0: at once.

        A client reads it on its probe beat, a little after each probe round (see the uplink
        runner), so babeld, the probe and its answers cost one wake-up together.
        """
        if self.babel_pace is not None:
            return self.babel_pace, 0.0
        beat = min((u.probe_interval for u in self.uplinks), default=0.0)
        if 0 < beat <= MAX_BABEL_PACE:
            return beat, answers_after(beat)
        return BABEL_PACE, 0.0

    def private_keys(self) -> list[str]:
        """Every private key this node holds (for log redaction)."""
        keys = [u.keys.private for u in self.uplinks] + ([self.gateway.keys.private] if self.gateway else [])
        return keys + ([self.links.keys.private] if self.links else [])


def read_secret(path: str, field: str, source: str) -> bytes:
    """A shared secret file (>= 16 bytes), readable by its owner only."""
    problem = not_regular(path)
    if problem:
        raise ConfigError(f"{path} {problem}", source=source, field=field)
    try:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
                source=source, field=field,
            )
        with open(path, "rb") as f:
            data = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", source=source, field=field) from None
    if len(data) < 16:
        raise ConfigError(f"{path}: secret must be at least 16 bytes", source=source, field=field)
    return data


def _keys(f: Fields, source: str, errors: list[ConfigError]) -> KeyPair | None:
    path = f.take("private_key_file", str, None, required=True)
    if path is None or not _regular(f, "private_key_file", path):
        return None
    try:
        from meshctl.wireguard.keys import read_private_key

        return read_private_key(path, f"{f.path}.private_key_file")
    except ConfigError as exc:
        errors.append(ConfigError(exc.message, source=source, field=exc.field))
        return None


def _secret(f: Fields, source: str, errors: list[ConfigError]) -> bytes:
    path = f.take("secret_file", str, None, required=True)
    if path is None:
        return b""
    try:
        return read_secret(path, f"{f.path}.secret_file", source)
    except ConfigError as exc:
        errors.append(exc)
        return b""


def _regular(f: Fields, key: str, path: str) -> bool:
    """False (and a problem recorded) when a key file is a FIFO, directory or device: reading one would hang or fail."""
    problem = not_regular(path)
    if problem:
        f.error(key, f"{path} {problem}")
    return problem is None


def _public_key(f: Fields, key: str = "public_key") -> str:
    text = f.take(key, str, "", required=True)
    if text:
        try:
            from meshctl.wireguard.keys import decode_key

            decode_key(text, key)
        except ValueError as exc:
            f.error(key, str(exc))
    return text


def _iface(f: Fields, key: str = "interface") -> str:
    name = f.take(key, str, "", required=True)
    if name and (len(name) > 15 or "/" in name or " " in name):
        f.error(key, "not a valid interface name (at most 15 characters, no '/' or spaces)")
    return name


def _prefixes(f: Fields, key: str, required: bool = True) -> tuple[Prefix, ...]:
    out: list[Prefix] = []
    for i, text in enumerate(f.take_list(key, str, [], required)):
        try:
            out.append(ipaddress.ip_network(text))
        except ValueError as exc:
            f.error(f"{key}[{i}]", f"not a prefix: {exc}")
    if len(set(out)) != len(out):
        f.error(key, "duplicate prefixes")
    return tuple(out)


def _prefix(f: Fields, key: str) -> Prefix | None:
    """An optional prefix."""
    text = f.take(key, str, None)
    if text is None:
        return None
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        f.error(key, f"not a prefix: {exc}")
        return None


def _interface_addr(f: Fields, key: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    text = f.take(key, str, "", required=True)
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        if text:
            f.error(key, f"not an address: {exc}")
        return ipaddress.ip_interface("0.0.0.0/32")


def _addresses_per_family(f: Fields, key: str) -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]:
    """One address, or a list with at most one per family (``"10.98.0.1/32"`` or ``["10.98.0.1/32", "fd98::1/128"]``)."""
    raw = f.take(key, (str, list), "", required=True)
    texts = [raw] if isinstance(raw, str) else raw
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for i, text in enumerate(texts):
        where = key if isinstance(raw, str) else f"{key}[{i}]"
        if not isinstance(text, str):
            f.error(where, f"must be str, not {type(text).__name__}")
            continue
        try:
            addr = ipaddress.ip_interface(text)
        except ValueError as exc:
            if text:
                f.error(where, f"not an address: {exc}")
            continue
        if any(a.version == addr.version for a in out):
            f.error(where, f"a second IPv{addr.version} address: give one address per family")
            continue
        out.append(addr)
    if not out and texts:
        return (ipaddress.ip_interface("0.0.0.0/32"),)
    if not texts:
        f.error(key, "needs an address")
        return (ipaddress.ip_interface("0.0.0.0/32"),)
    return tuple(out)


def _check_targets(f: Fields, steer: tuple[Prefix, ...]) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """``check``: addresses answering ping behind the gateways, one per family, inside the steered prefixes."""
    raw = f.take("check", (str, list), [])
    texts = [raw] if isinstance(raw, str) else raw
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for i, text in enumerate(texts):
        where = "check" if isinstance(raw, str) else f"check[{i}]"
        try:
            addr = ipaddress.ip_address(text) if isinstance(text, str) else None
        except ValueError:
            addr = None
        if addr is None:
            f.error(where, f"not an address: {text!r}")
            continue
        if any(a.version == addr.version for a in out):
            f.error(where, f"a second IPv{addr.version} target: give one per family")
        elif not any(addr.version == p.version and addr in p for p in steer):
            f.error(where, f"{addr} is not inside a steered prefix, so checks would not go through the gateways")
        else:
            out.append(addr)
    return tuple(out)


def _endpoint(f: Fields, key: str, required: bool) -> str | None:
    text = f.take(key, str, None, required=required)
    if text is None:
        return None
    try:
        parse_listen(text)
    except ValueError as exc:
        f.error(key, str(exc))
    return text


def _port(f: Fields, key: str, default: int) -> int:
    port = f.take(key, int, default)
    if not 0 < port < 65536:
        f.error(key, "must be 1..65535")
    return port


def _hysteresis(f: Fields) -> Hysteresis:
    from meshctl.uplink.policy import Hysteresis  # only a node with an uplink needs the policy

    d = Hysteresis()
    margin = f.take("margin", int, d.margin)
    hold = f.take("hold", float, d.hold)
    warm = f.take("warm_age", float, d.warm_age)
    if not 0 <= margin <= MAX_METRIC:
        f.error("margin", f"must be 0..{MAX_METRIC} (a Babel metric difference)")
    if not 0 <= hold <= MAX_HOLD:
        f.error("hold", f"must be 0..{MAX_HOLD} seconds")
    if not 10 <= warm < 180:
        f.error("warm_age", "must be 10..180 seconds (WireGuard rejects sessions older than 180 s)")
    f.finish()
    return Hysteresis(margin, hold, warm)


def _uplink(raw: object, i: int, source: str, errors: list[ConfigError]) -> UplinkConfig | None:
    f = Fields(raw, f"uplink[{i}]", source, errors)
    interface = _iface(f)
    keys = _keys(f, source, errors)
    listen_port = _port(f, "listen_port", 51900)
    addresses = _addresses_per_family(f, "address")
    steer = _prefixes(f, "steer")
    for p in steer:
        if not any(a.version == p.version for a in addresses):
            f.error("steer", f"{p} is IPv{p.version} but the uplink has no IPv{p.version} address: add one to 'address'")
    keepalive = f.take("keepalive", int, 10)
    if not 0 <= keepalive <= 60:
        f.error("keepalive", "must be 0..60 seconds (<= 60 keeps a session warm)")
    secret = _secret(f, source, errors)
    control_port = _port(f, "control_port", DEFAULT_CONTROL_PORT)
    probe_interval = f.take("probe_interval", float, 0.1)
    if not 0.01 <= probe_interval <= 10:
        f.error("probe_interval", "must be 0.01..10 seconds")
    backup_probe_interval = f.take("backup_probe_interval", float, probe_interval)
    if not 0.01 <= backup_probe_interval <= 10 or backup_probe_interval < probe_interval:
        f.error("backup_probe_interval", "must be 0.01..10 seconds, and not below probe_interval")
    probe_loss = f.take("probe_loss", int, 3)
    if not 1 <= probe_loss <= 100:
        f.error("probe_loss", "must be 1..100")
    check = _check_targets(f, steer)
    check_interval = f.take("check_interval", float, 1.0)
    if not 0.01 <= check_interval <= 60:
        f.error("check_interval", "must be 0.01..60 seconds")
    check_loss = f.take("check_loss", int, 3)
    if not 1 <= check_loss <= 100:
        f.error("check_loss", "must be 1..100")
    hyst = _hysteresis(Fields(f.take("hysteresis", dict, {}), f"uplink[{i}].hysteresis", source, errors))
    gateways: list[GatewayCandidate] = []
    names: set[str] = set()
    raw_gws = f.take("gateway", list, [], required=True)
    if not raw_gws and isinstance(raw, dict) and "gateway" in raw:
        f.error("gateway", "needs at least one gateway")
    for j, g in enumerate(raw_gws):
        gf = Fields(g, f"uplink[{i}].gateway[{j}]", source, errors)
        name = gf.take("name", str, f"gw{j}", required=True)
        if name in names:
            gf.error("name", f"duplicate gateway name {name!r}")
        names.add(name)
        public_key = _public_key(gf)
        endpoint = _endpoint(gf, "endpoint", True) or ""
        control_text = gf.take("control", str, "", required=True)
        try:
            control = ipaddress.ip_address(control_text)
        except ValueError:
            if control_text:
                gf.error("control", f"not an address: {control_text!r}")
            control = ipaddress.ip_address("0.0.0.0")
        mesh = _prefix(gf, "mesh")
        router_id = gf.take("router_id", str, None)
        if mesh is None and router_id is None and not (isinstance(g, dict) and "mesh" in g):
            gf.error("mesh", "give mesh (the gateway's mesh prefix) or router_id, to rank it by Babel metric")
        gf.finish()
        gateways.append(GatewayCandidate(name, public_key, endpoint, control, mesh, router_id))
    keys_seen = [g.public_key for g in gateways]
    if len(set(keys_seen)) != len(keys_seen):
        f.error("gateway", "two gateways share a public key: each gateway needs its own key")
    f.finish()
    if keys is None:
        return None
    return UplinkConfig(interface, keys, listen_port, addresses, steer, keepalive, secret, control_port,
                        probe_interval, probe_loss, hyst, tuple(gateways), backup_probe_interval, check,
                        check_interval, check_loss)


def _gateway(raw: object, source: str, errors: list[ConfigError]) -> GatewayConfig | None:
    f = Fields(raw, "gateway", source, errors)
    interface = _iface(f)
    keys = _keys(f, source, errors)
    listen_port = _port(f, "listen_port", 51900)
    address = _interface_addr(f, "address")
    secret = _secret(f, source, errors)
    control_port = _port(f, "control_port", DEFAULT_CONTROL_PORT)
    lease = f.take("lease", float, 2.0)
    if not 0.1 <= lease <= 600:
        f.error("lease", "must be 0.1..600 seconds")
    proto = f.take("route_protocol", int, 152)
    if not 5 <= proto <= 254:
        f.error("route_protocol", "must be 5..254 (a kernel route protocol number babeld redistributes)")
    standby = f.take("standby_protocol", int, 153)
    if not 5 <= standby <= 254 or standby == proto:
        f.error("standby_protocol", "must be 5..254 and differ from route_protocol (babeld redistributes it with a high metric)")
    clients: list[ClientEntry] = []
    seen: set[Prefix] = set()
    for j, c in enumerate(f.take("client", list, [], required=True)):
        cf = Fields(c, f"gateway.client[{j}]", source, errors)
        name = cf.take("name", str, f"client{j}", required=True)
        public_key = _public_key(cf)
        endpoint = _endpoint(cf, "endpoint", False)
        addresses = _prefixes(cf, "addresses")
        mesh = _prefix(cf, "mesh")
        for a in addresses:
            if a in seen:
                cf.error("addresses", f"{a} is given to another client too")
            seen.add(a)
        cf.finish()
        clients.append(ClientEntry(name, public_key, endpoint, addresses, mesh))
    f.finish()
    if keys is None:
        return None
    return GatewayConfig(interface, keys, listen_port, address, secret, control_port, lease, proto, standby,
                         tuple(clients))


def _gossip(raw: object, source: str, errors: list[ConfigError]) -> GossipConfig | None:
    from meshctl.gossip.signing import parse_public, read_signing_key

    f = Fields(raw, "gossip", source, errors)
    path = f.take("private_key_file", str, None, required=True)
    key = None
    if path is not None and _regular(f, "private_key_file", path):
        try:
            key = read_signing_key(path, "gossip.private_key_file")
        except ConfigError as exc:
            errors.append(ConfigError(exc.message, source=source, field=exc.field))
    port = _port(f, "port", DEFAULT_GOSSIP_PORT)
    lifetime = f.take("lifetime", float, 60.0)
    if not 3 <= lifetime <= 3600:
        f.error("lifetime", "must be 3..3600 seconds")
    endpoints = []
    for k, text in enumerate(f.take_list("endpoints", str, [])):
        try:
            parse_listen(text)
            endpoints.append(text)
        except ValueError as exc:
            f.error(f"endpoints[{k}]", str(exc))
    trusted: list[tuple[str, str]] = []
    for j, entry in enumerate(f.take("trust", list, [], required=True)):
        tf = Fields(entry, f"gossip.trust[{j}]", source, errors)
        name = tf.take("name", str, "", required=True)
        text = tf.take("public_key", str, "", required=True)
        if text:
            try:
                parse_public(text)
            except ValueError as exc:
                tf.error("public_key", str(exc))
        if name in {n for n, _ in trusted}:
            tf.error("name", f"{name!r} is trusted twice")
        tf.finish()
        trusted.append((name, text))
    f.finish()
    if key is None:
        return None
    return GossipConfig(key, port, lifetime, tuple(trusted), tuple(endpoints))


def _babel_options(f: Fields, key: str, default: str | None) -> str | None:
    text = f.take(key, str, default)
    if text is not None and any(ch in text for ch in "\n\r"):
        f.error(key, "one line of babeld interface options")
    return text


def _listen_ports(f: Fields, key: str, required: bool) -> int:
    port = f.take(key, int, 0, required=required)  # each tunnel has its own UDP port
    if port and not 0 < port < 65536:
        f.error(key, "must be 1..65535")
    return port


def _path(raw: object, where: str, k: int, base: str, source: str, errors: list[ConfigError]) -> PathConfig:
    from meshctl.links.plan import path_interface  # only a node with [links] needs the link plan

    pf = Fields(raw, where, source, errors)
    endpoint = _endpoint(pf, "endpoint", False)
    listen_port = _listen_ports(pf, "listen_port", True)
    interface = pf.take("interface", str, path_interface(base, k))
    if len(interface.encode()) > 15 or "/" in interface or " " in interface:
        pf.error("interface", "not a valid interface name (at most 15 characters, no '/' or spaces)")
    rxcost = pf.take("rxcost", int, None)
    if rxcost is not None and not 1 <= rxcost < 65535:
        pf.error("rxcost", "must be 1..65534 (babeld's rxcost; 96 is a wired link's)")
    babel = _babel_options(pf, "babel", None)
    fwmark = pf.take("fwmark", int, 0)
    if not 0 <= fwmark < 2**32:
        pf.error("fwmark", "must be 0..4294967295")
    pf.finish()
    return PathConfig(interface, listen_port, endpoint, rxcost, babel, fwmark)


def _neighbour(raw: object, j: int, source: str, errors: list[ConfigError]) -> NeighbourConfig:
    from meshctl.links.plan import MAX_PATHS, interface_name  # only a node with [links] needs the link plan

    nf = Fields(raw, f"links.neighbour[{j}]", source, errors)
    name = nf.take("name", str, "", required=True)
    public_key = _public_key(nf)
    raw_paths = nf.take("path", list, [])
    from_gossip = nf.take("from_gossip", str, "")
    if from_gossip not in ("", "endpoints", "paths"):
        nf.error("from_gossip", 'must be "endpoints" (more endpoints for one tunnel) or "paths" (a tunnel per address)')
        from_gossip = ""
    if raw_paths and from_gossip == "endpoints":
        nf.error("from_gossip", '"endpoints" is for one tunnel; with [[links.neighbour.path]] use "paths"')
    endpoints = []
    needs_endpoints = not raw_paths and not from_gossip
    for k, text in enumerate(nf.take_list("endpoints", str, [], required=needs_endpoints)):
        try:
            parse_listen(text)
            endpoints.append(text)
        except ValueError as exc:
            nf.error(f"endpoints[{k}]", str(exc))
    if raw_paths and endpoints:
        nf.error("endpoints", "give each [[links.neighbour.path]] its endpoint instead")
    interface = nf.take("interface", str, interface_name(name))
    if len(interface.encode()) > 15 or "/" in interface or " " in interface:
        nf.error("interface", "not a valid interface name (at most 15 characters, no '/' or spaces)")
    listen_port = _listen_ports(nf, "listen_port", not raw_paths or from_gossip == "paths")
    if raw_paths and listen_port and from_gossip != "paths":
        nf.error("listen_port", "give each [[links.neighbour.path]] its listen_port instead")
    if from_gossip == "paths" and listen_port + MAX_PATHS > 65536:
        nf.error("listen_port", f"gossip paths take {MAX_PATHS} ports from listen_port on")
    port = _listen_ports(nf, "port", bool(from_gossip))
    if port and not from_gossip:
        nf.error("port", "only with from_gossip (the port at the addresses the neighbour advertises)")
    if len(raw_paths) > MAX_PATHS:
        nf.error("path", f"at most {MAX_PATHS} paths per neighbour")
    babel = _babel_options(nf, "babel", None)
    paths = tuple(_path(p, f"links.neighbour[{j}].path[{k}]", k, interface, source, errors)
                  for k, p in enumerate(raw_paths[:MAX_PATHS]))
    nf.finish()
    return NeighbourConfig(name, public_key, tuple(endpoints), interface, listen_port, paths, from_gossip, port, babel)


def _links(raw: object, source: str, errors: list[ConfigError]) -> LinksConfig | None:
    f = Fields(raw, "links", source, errors)
    keys = _keys(f, source, errors)
    keepalive = f.take("keepalive", int, 5)
    if not 1 <= keepalive <= 60:
        f.error("keepalive", "must be 1..60 seconds (the neighbour's silence is how a dead path shows)")
    dead_after = f.take("dead_after", float, 15.0)
    if not dead_after > keepalive:
        f.error("dead_after", f"must be longer than keepalive ({keepalive} s)")
    babel = _babel_options(f, "babel", "type tunnel") or "type tunnel"
    neighbours = [_neighbour(n, j, source, errors) for j, n in enumerate(f.take("neighbour", list, [], required=True))]
    for what, values in (("name", [n.name for n in neighbours]),
                         ("interface", [i for n in neighbours for i in n.interfaces]),
                         ("listen_port", [p for n in neighbours for p in n.listen_ports if p])):
        if len(set(values)) != len(values):
            f.error("neighbour", {"name": "two neighbours share a name", "interface": "two tunnels share an interface",
                                  "listen_port": "two tunnels share a listen_port"}[what])
    f.finish()
    if keys is None:
        return None
    return LinksConfig(keys, keepalive, dead_after, babel, tuple(neighbours))


def parse_babel_address(text: str) -> Endpoint:
    """``parse_endpoint``, stricter: ``tcp: 41001``, ``tcp:+41001`` or ``unix: /run/x`` are typos, refused.

    The port must be written as digits alone, and there is no space around a
    path, so the address babeld is asked at is the one the user meant.
    """
    endpoint = parse_endpoint(text)
    if endpoint.scheme == "tcp":
        if text.rpartition(":")[2] != str(endpoint.port):
            raise BabelError(f"bad port in babeld address {text!r}: digits only, 1..65535")
    elif endpoint.path != endpoint.path.strip() or not endpoint.path.strip():
        raise BabelError(f"bad babeld address {text!r}: no spaces around the socket path")
    return endpoint


def _babel_endpoint(node: Fields) -> Endpoint:
    """node.babel: where babeld's local interface listens."""
    default = parse_endpoint(f"tcp:[::1]:{DEFAULT_PORT}")
    text = node.take("babel", str, str(default))
    try:
        return parse_babel_address(text)
    except BabelError as exc:
        node.error("babel", str(exc))
        return default


def _control_socket(node: Fields) -> str:
    """node.control_socket: a unix socket path the daemon may (re)create, and nothing else.

    The daemon removes a stale socket at start; anything else found there (a
    regular file, a directory) is someone's and stays untouched.
    """
    path = node.take("control_socket", str, DEFAULT_CONTROL_SOCKET)
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        node.error("control_socket", f"longer than {SUN_PATH_MAX} bytes: a unix socket cannot be bound there")
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            node.error("control_socket", f"{parent} is not a directory")
    except OSError:
        pass  # not ours to inspect (e.g. no search permission); the daemon reports what binding says
    else:
        if not stat.S_ISSOCK(mode):
            kind = "directory" if stat.S_ISDIR(mode) else "file that is not a socket"
            node.error("control_socket", f"{path} is a {kind}; meshctl replaces only a stale socket there")
    return path


def parse_config(data: dict, source: str = "<config>") -> NodeConfig:
    """Validate a parsed config; raise one :class:`ConfigError` listing every problem."""
    errors: list[ConfigError] = []
    top = Fields(data, "", source, errors)
    node = Fields(top.take("node", dict, {}, required=True), "node", source, errors)
    name = node.take("name", str, "", required=True)
    babel = _babel_endpoint(node)
    control_socket = _control_socket(node)
    metrics = node.take("metrics", str, None)
    if metrics is not None:
        try:
            parse_listen(metrics)
        except ValueError as exc:
            node.error("metrics", str(exc))
    babel_pace = node.take("babel_pace", float, None)
    if babel_pace is not None and not 0 <= babel_pace <= MAX_BABEL_PACE:
        node.error("babel_pace", f"must be 0..{MAX_BABEL_PACE:g} seconds (babeld drops a client it cannot write "
                                 "to for 100 ms)")
    node.finish()
    uplinks = []
    for i, raw in enumerate(top.take("uplink", list, [])):
        up = _uplink(raw, i, source, errors)
        if up is not None:
            uplinks.append(up)
    gateway = None
    if "gateway" in data:
        gateway = _gateway(top.take("gateway", dict, {}), source, errors)
    gossip = _gossip(top.take("gossip", dict, {}), source, errors) if "gossip" in data else None
    links = _links(top.take("links", dict, {}), source, errors) if "links" in data else None
    top.finish()
    ifaces = [u.interface for u in uplinks] + ([gateway.interface] if gateway else [])
    if len(set(ifaces)) != len(ifaces):
        errors.append(ConfigError("an interface is used twice", source=source, field="uplink"))
    if not uplinks and gateway is None and "gossip" not in data and "links" not in data and not errors:
        errors.append(ConfigError("nothing to do: no [[uplink]], [gateway], [gossip] or [links]", source=source,
                                  field="uplink"))
    if errors:
        raise ConfigError.collect(errors)
    if links is not None:
        ifaces += [i for n in links.neighbours for i in n.interfaces]
        if len(set(ifaces)) != len(ifaces):
            errors.append(ConfigError("an interface is used twice", source=source, field="links.neighbour"))
            raise ConfigError.collect(errors)
    return NodeConfig(name, babel, control_socket, tuple(uplinks), gateway, source, metrics, gossip, links,
                      babel_pace)


def load_config(path: str) -> NodeConfig:
    """Load and validate a node config file; every problem names its field and, where it can, its line."""
    data = load_toml(path)
    try:
        return parse_config(data, path)
    except ConfigError as exc:
        raise with_lines(exc, path) from None


def load_node_addresses(path: str) -> tuple[Endpoint, str]:
    """Only ``[node]``'s babel address and control socket, for commands that ask the daemon or babeld.

    Reads no key file and checks no other section, so ``meshctl status`` works
    for anyone who may read the config, whatever the rest of it says.
    """
    data = load_toml(path)
    errors: list[ConfigError] = []
    node = Fields(data.get("node", {}), "node", path, errors)
    babel = _babel_endpoint(node)
    control_socket = node.take("control_socket", str, DEFAULT_CONTROL_SOCKET)
    if errors:
        raise with_lines(ConfigError.collect(errors), path)
    return babel, control_socket
