"""The ``[[uplink]]`` section of a node config: a client's uplinks and their candidate gateways.

Loaded by :func:`meshctl.config.parse_config` only for a config that has an
uplink, so that other nodes do not build these types at start-up.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from meshctl.config import (
    DEFAULT_CONTROL_PORT,
    MAX_HOLD,
    MAX_METRIC,
    Prefix,
    _endpoint,
    _iface,
    _keys,
    _port,
    _prefix,
    _prefixes,
    _public_key,
    _secret,
)
from meshctl.errors import ConfigError
from meshctl.records import record
from meshctl.tomlfile import Fields

if TYPE_CHECKING:
    from meshctl.uplink.policy import Hysteresis
    from meshctl.wireguard.keys import KeyPair


@record
class GatewayCandidate:
    """One gateway an uplink may use."""

    name: str
    public_key: str
    endpoint: str
    control: ipaddress.IPv4Address | ipaddress.IPv6Address  # its address inside the uplink tunnel
    mesh: Prefix | None  # prefix whose Babel metric ranks it ...
    router_id: str | None  # ... or its router id


@record
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


def parse_uplink(raw: object, i: int, source: str, errors: list[ConfigError]) -> UplinkConfig | None:
    """One ``[[uplink]]`` entry, checked; None when its key could not be read (the problem is in ``errors``)."""
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
