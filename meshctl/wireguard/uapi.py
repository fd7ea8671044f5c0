"""The cross-platform WireGuard UAPI text protocol, without I/O.

``get=1`` returns ``key=value`` lines ending with ``errno=N`` and a blank line;
``set=1`` takes ``key=value`` lines ended by a blank line and answers
``errno=N``.  Keys travel as lowercase hex, not base64.  A ``set`` is not
transactional: wireguard-go stops at the first bad line and keeps what it had
applied, so callers validate everything before encoding.  We never emit
``replace_peers=true``: it would destroy every session, warm backups included.
"""

from __future__ import annotations

import functools
import ipaddress

from meshctl.errors import MeshctlError
from meshctl.records import record
from meshctl.wireguard.keys import KeyPair, hex_to_key, key_to_hex
from meshctl.wireguard.state import Device, Peer, Prefix


class UapiError(MeshctlError):
    """The UAPI peer answered errno != 0 or spoke nonsense."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


@record
class SetPeer:
    """One peer section of a ``set=1`` request."""

    public_key: str
    update_only: bool = False
    remove: bool = False
    endpoint: str | None = None
    persistent_keepalive: int | None = None
    replace_allowed_ips: bool = False
    allowed_ips: tuple[Prefix, ...] = ()


@record
class SetRequest:
    """A whole ``set=1`` request."""

    private_key: str | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: tuple[SetPeer, ...] = ()

    def __repr__(self) -> str:  # never show the private key
        key = "<set>" if self.private_key else None
        return f"SetRequest(private_key={key}, listen_port={self.listen_port}, peers={self.peers!r})"


def encode_get() -> bytes:
    """The bytes of a ``get`` request."""
    return b"get=1\n\n"


def encode_set(request: SetRequest) -> bytes:
    """The bytes of a ``set`` request."""
    lines = ["set=1"]
    if request.private_key is not None:
        lines.append(f"private_key={key_to_hex(request.private_key)}")
    if request.listen_port is not None:
        lines.append(f"listen_port={request.listen_port}")
    if request.fwmark is not None:
        lines.append(f"fwmark={request.fwmark}")
    for peer in request.peers:
        lines.append(f"public_key={key_to_hex(peer.public_key)}")
        if peer.remove:
            lines.append("remove=true")
            continue
        if peer.update_only:
            lines.append("update_only=true")
        if peer.endpoint is not None:
            lines.append(f"endpoint={peer.endpoint}")
        if peer.persistent_keepalive is not None:
            lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        if peer.replace_allowed_ips:
            lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={prefix}" for prefix in peer.allowed_ips)
    return ("\n".join(lines) + "\n\n").encode("ascii")


def parse_errno(text: str) -> int:
    """The errno of a ``set`` reply (or of any reply's last line)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("errno="):
            try:
                return int(line[6:])
            except ValueError:
                break
    raise UapiError(f"UAPI reply without errno: {text[-80:]!r}")


def parse_get(name: str, text: str) -> Device:
    """Parse a ``get=1`` reply into a :class:`Device`."""
    errno = parse_errno(text)
    if errno:
        raise UapiError(f"UAPI get on {name} failed with errno {errno}", errno)
    dev: dict = {"name": name, "peers": []}
    peer: dict | None = None

    def close_peer() -> None:
        if peer is not None:
            dev["peers"].append(
                Peer(
                    public_key=peer["public_key"],
                    endpoint=peer.get("endpoint"),
                    allowed_ips=frozenset(peer["allowed"]),
                    persistent_keepalive=peer.get("keepalive", 0),
                    last_handshake=peer.get("hs_sec", 0) + peer.get("hs_nsec", 0) / 1e9,
                    rx_bytes=peer.get("rx", 0),
                    tx_bytes=peer.get("tx", 0),
                )
            )

    for line in text.splitlines():
        if not line or line.startswith("errno="):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(f"bad UAPI line from {name}: {line[:60]!r}")
        try:
            if key == "public_key":
                close_peer()
                peer = {"public_key": hex_to_key(value), "allowed": []}
            elif peer is None:
                if key == "private_key":
                    dev["private_key"] = hex_to_key(value)
                elif key == "listen_port":
                    dev["listen_port"] = int(value)
                elif key == "fwmark":
                    dev["fwmark"] = int(value)
            elif key == "endpoint":
                peer["endpoint"] = value
            elif key == "allowed_ip":
                peer["allowed"].append(ipaddress.ip_network(value, strict=False))
            elif key == "last_handshake_time_sec":
                peer["hs_sec"] = int(value)
            elif key == "last_handshake_time_nsec":
                peer["hs_nsec"] = int(value)
            elif key == "rx_bytes":
                peer["rx"] = int(value)
            elif key == "tx_bytes":
                peer["tx"] = int(value)
            elif key == "persistent_keepalive_interval":
                peer["keepalive"] = int(value)
        except ValueError as exc:
            raise UapiError(f"bad UAPI value from {name} for {key}: {exc}") from None
    close_peer()
    dev["peers"] = tuple(dev["peers"])
    if dev.get("private_key"):
        dev["public_key"] = _public_key(dev["private_key"])
    return Device(**dev)


@functools.lru_cache(maxsize=8)
def _public_key(private: str) -> str:
    """The public key of a device's private key: an X25519 derivation, made once, not on every read
    (a daemon reads each of its devices every second; the key stays the same)."""
    return KeyPair.from_private(private).public
