"""WireGuard device and peer state as frozen dataclasses.

The same types describe what a backend reads (actual) and what policy wants
(desired); the diff in ``meshctl.wireguard.diff`` turns the pair into the
smallest set of operations.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field

from meshctl.records import record

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


@record
class Peer:
    """One WireGuard peer.  Keys are base64, as ``wg`` shows them."""

    public_key: str
    endpoint: str | None = None  # "host:port" or "[v6]:port"
    allowed_ips: frozenset[Prefix] = frozenset()
    persistent_keepalive: int = 0
    # Read-only facts (ignored by the diff):
    last_handshake: float = 0.0  # seconds since the epoch, 0 = never
    rx_bytes: int = 0
    tx_bytes: int = 0


@record
class Device:
    """One WireGuard interface."""

    name: str
    listen_port: int = 0
    private_key: str | None = field(default=None, repr=False)
    public_key: str | None = None
    fwmark: int = 0
    peers: tuple[Peer, ...] = ()

    def peer(self, public_key: str) -> Peer | None:
        """The peer with that public key, if any."""
        for p in self.peers:
            if p.public_key == public_key:
                return p
        return None
