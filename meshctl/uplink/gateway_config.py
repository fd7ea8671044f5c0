"""The ``[gateway]`` section of a node config: this node's uplink server and the clients it serves.

Loaded by :func:`meshctl.config.parse_config` only for a config that has the
section, so that other nodes do not build these types at start-up.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from meshctl.config import (
    DEFAULT_CONTROL_PORT,
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
    from meshctl.wireguard.keys import KeyPair


@record
class ClientEntry:
    """A client a gateway serves."""

    name: str
    public_key: str
    endpoint: str | None
    addresses: tuple[Prefix, ...]
    mesh: Prefix | None = None  # the client's own mesh address, for the handoff route


@record
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


def _interface_addr(f: Fields, key: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    text = f.take(key, str, "", required=True)
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        if text:
            f.error(key, f"not an address: {exc}")
        return ipaddress.ip_interface("0.0.0.0/32")


def parse_gateway(raw: object, source: str, errors: list[ConfigError]) -> GatewayConfig | None:
    """The ``[gateway]`` section, checked; None when its key could not be read (the problem is in ``errors``)."""
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
