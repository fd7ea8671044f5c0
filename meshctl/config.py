"""The node config (``/etc/meshctl/node.toml``): loading and validation.

Every problem is reported with its field path (``uplink[0].gateway[1].public_key``)
and the file; keys and secrets are read from files that only their owner
can read.  Validation touches nothing: the daemon runs it before it acts.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import stat
from typing import TYPE_CHECKING, Any

from meshctl.babel.endpoint import DEFAULT_PORT, Endpoint, parse_endpoint
from meshctl.babel.errors import BabelError
from meshctl.beat import answers_after
from meshctl.errors import ConfigError
from meshctl.listen import parse_listen
from meshctl.records import record
from meshctl.tomlfile import Fields, load_toml, not_regular, with_lines

# A section's types and parser are loaded with a config that has the section: [[uplink]]
# (meshctl.uplink.client_config), [gateway] (meshctl.uplink.gateway_config), [links]
# (meshctl.links.config).  Each frozen dataclass costs about 0.5 ms to build at import, and a
# node has one or two roles.  PyNaCl is loaded by a config with keys in it only (X25519
# for WireGuard, Ed25519 for gossip).  The section types stay importable from here.
if TYPE_CHECKING:
    from meshctl.gossip.signing import SigningKey
    from meshctl.links.config import LinksConfig as LinksConfig
    from meshctl.links.config import NeighbourConfig as NeighbourConfig
    from meshctl.links.config import PathConfig as PathConfig
    from meshctl.uplink.client_config import GatewayCandidate as GatewayCandidate
    from meshctl.uplink.client_config import UplinkConfig as UplinkConfig
    from meshctl.uplink.gateway_config import ClientEntry as ClientEntry
    from meshctl.uplink.gateway_config import GatewayConfig as GatewayConfig
    from meshctl.wireguard.keys import KeyPair

DEFAULT_CONFIG = "/etc/meshctl/node.toml"
DEFAULT_CONTROL_SOCKET = "/run/meshctl/meshctl.sock"
DEFAULT_CONTROL_PORT = 51901
DEFAULT_GOSSIP_PORT = 51903
DEFAULT_GOSSIP_LIFETIME = 60.0  # seconds a description lives unless refreshed
GOSSIP_LIFETIMES = (3.0, 3600.0)  # the lifetimes a config may set, seconds
MAX_METRIC = 65535  # Babel metrics are 16 bits; 65535 is unreachable
MAX_HOLD = 3600.0  # seconds; a longer hold is a typo, not a policy
#: The longest wait between reads of babeld's chatter (babeld drops a client it cannot write to for 100 ms).
MAX_BABEL_PACE = 0.1
SUN_PATH_MAX = 107  # a unix socket path longer than sockaddr_un's sun_path cannot be bound

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


@record
class GossipConfig:
    """Controller gossip: this node's signing key and the nodes it trusts."""

    key: SigningKey
    port: int
    lifetime: float  # seconds a description lives unless refreshed
    trusted: tuple[tuple[str, str], ...]  # (node name, Ed25519 public key in base64)
    endpoints: tuple[str, ...] = ()  # where new neighbours can reach this node's tunnels, advertised


@record
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
    # on a client, as it comes elsewhere.  At most this much is added to what babeld tells meshctl.
    babel_pace: float | None = None

    def babel_read_pace(self) -> tuple[float, float]:
        """(period, offset) of the grid babeld's chatter is read on; period 0: as it comes.

        A client reads it on its probe beat, a little after each probe round (see the uplink runner),
        so babeld, the probe and its answers cost one wake-up together.  Elsewhere there is no beat to
        share: pausing and polling measured no cheaper than reading (dearer on a node without probes),
        so babeld is read as it comes unless ``babel_pace`` says otherwise.
        """
        if self.babel_pace is not None:
            return self.babel_pace, 0.0
        beat = min((u.probe_interval for u in self.uplinks), default=0.0)
        if 0 < beat <= MAX_BABEL_PACE:
            return beat, answers_after(beat)
        return 0.0, 0.0

    def private_keys(self) -> list[str]:
        """Every private key this node holds (for log redaction)."""
        keys = [u.keys.private for u in self.uplinks] + ([self.gateway.keys.private] if self.gateway else [])
        return keys + ([self.links.keys.private] if self.links else [])


_MOVED = {
    "GatewayCandidate": "meshctl.uplink.client_config",
    "UplinkConfig": "meshctl.uplink.client_config",
    "ClientEntry": "meshctl.uplink.gateway_config",
    "GatewayConfig": "meshctl.uplink.gateway_config",
    "PathConfig": "meshctl.links.config",
    "NeighbourConfig": "meshctl.links.config",
    "LinksConfig": "meshctl.links.config",
}


def __getattr__(name: str) -> Any:
    """The section types, from the module that holds them (loaded on first use)."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    lifetime = f.take("lifetime", float, DEFAULT_GOSSIP_LIFETIME)
    if not GOSSIP_LIFETIMES[0] <= lifetime <= GOSSIP_LIFETIMES[1]:
        f.error("lifetime", "must be {:g}..{:g} seconds".format(*GOSSIP_LIFETIMES))
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
    raw_uplinks = top.take("uplink", list, [])
    if raw_uplinks:
        from meshctl.uplink.client_config import parse_uplink

        for i, raw in enumerate(raw_uplinks):
            up = parse_uplink(raw, i, source, errors)
            if up is not None:
                uplinks.append(up)
    gateway = None
    if "gateway" in data:
        from meshctl.uplink.gateway_config import parse_gateway

        gateway = parse_gateway(top.take("gateway", dict, {}), source, errors)
    gossip = _gossip(top.take("gossip", dict, {}), source, errors) if "gossip" in data else None
    links = None
    if "links" in data:
        from meshctl.links.config import parse_links

        links = parse_links(top.take("links", dict, {}), source, errors)
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
