"""Kernel WireGuard through pyroute2's generic netlink (needs the wireguard module).

pyroute2 sends one peer per netlink message, so a ``SetRequest`` becomes one
message per peer, in the diff's order: peers gaining prefixes first.  Each
step is atomic in the kernel and no prefix is ever without an owner, which
is the property fail-over needs.  pyroute2 >= 0.9.3 is required: before it,
every set replaced the peer's AllowedIPs.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import SetRequest, UapiError


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get_attr(name) if hasattr(msg, "get_attr") else msg.get(name)
    return default if value is None else value


def _endpoint(raw: Any) -> str | None:
    if not raw:
        return None
    addr, port = raw.get("addr"), raw.get("port")
    if not addr:
        return None
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def parse_info(ifname: str, messages: list[Any]) -> Device:
    """Turn pyroute2's WG_CMD_GET_DEVICE replies into a :class:`Device`."""
    private_key = public_key = None
    listen_port = fwmark = 0
    peers: list[Peer] = []
    for msg in messages:
        private_key = _attr(msg, "WGDEVICE_A_PRIVATE_KEY", private_key)
        public_key = _attr(msg, "WGDEVICE_A_PUBLIC_KEY", public_key)
        listen_port = _attr(msg, "WGDEVICE_A_LISTEN_PORT", listen_port)
        fwmark = _attr(msg, "WGDEVICE_A_FWMARK", fwmark)
        for peer in _attr(msg, "WGDEVICE_A_PEERS", []) or []:
            allowed = []
            for a in _attr(peer, "WGPEER_A_ALLOWEDIPS", []) or []:
                addr = _attr(a, "WGALLOWEDIP_A_IPADDR")
                mask = _attr(a, "WGALLOWEDIP_A_CIDR_MASK")
                if addr is not None and mask is not None:
                    allowed.append(ipaddress.ip_network(f"{addr}/{mask}", strict=False))
            hs = _attr(peer, "WGPEER_A_LAST_HANDSHAKE_TIME", {}) or {}
            peers.append(
                Peer(
                    public_key=_as_str(_attr(peer, "WGPEER_A_PUBLIC_KEY")),
                    endpoint=_endpoint(_attr(peer, "WGPEER_A_ENDPOINT")),
                    allowed_ips=frozenset(allowed),
                    persistent_keepalive=_attr(peer, "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 0),
                    last_handshake=float(hs.get("tv_sec", 0)) + hs.get("tv_nsec", 0) / 1e9 if isinstance(hs, dict) else 0.0,
                    rx_bytes=_attr(peer, "WGPEER_A_RX_BYTES", 0),
                    tx_bytes=_attr(peer, "WGPEER_A_TX_BYTES", 0),
                )
            )
    return Device(
        name=ifname,
        listen_port=listen_port,
        private_key=_as_str(private_key) if private_key else None,
        public_key=_as_str(public_key) if public_key else None,
        fwmark=fwmark,
        peers=tuple(peers),
    )


def _as_str(value: Any) -> str:
    if isinstance(value, dict):  # pyroute2 key NLAs decode to {"value": b64}
        value = value.get("value")
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def peer_ops(request: SetRequest) -> list[dict[str, Any]]:
    """pyroute2 ``peer=`` dicts, one per peer, in the request's order."""
    ops = []
    for p in request.peers:
        op: dict[str, Any] = {"public_key": p.public_key}
        if p.remove:
            op["remove"] = True
            ops.append(op)
            continue
        if p.update_only:
            op["update_only"] = True
        if p.endpoint:
            host, _, port = p.endpoint.rpartition(":")
            op["endpoint_addr"] = host.strip("[]")
            op["endpoint_port"] = int(port)
        if p.persistent_keepalive is not None:
            op["persistent_keepalive"] = p.persistent_keepalive
        if p.replace_allowed_ips:
            op["replace_allowed_ips"] = True
        if p.allowed_ips:
            op["allowed_ips"] = [str(a) for a in p.allowed_ips]
        ops.append(op)
    return ops


class NetlinkBackend:
    """In-kernel WireGuard via pyroute2 (blocking calls run in a thread)."""

    name = "netlink"

    async def read(self, ifname: str) -> Device:
        return await asyncio.to_thread(self._read, ifname)

    async def write(self, ifname: str, request: SetRequest) -> None:
        await asyncio.to_thread(self._write, ifname, request)

    def _read(self, ifname: str) -> Device:
        from pyroute2 import WireGuard

        try:
            with WireGuard() as wg:
                return parse_info(ifname, list(wg.info(ifname)))
        except Exception as exc:  # pyroute2 raises NetlinkError and friends
            raise UapiError(f"WireGuard {ifname}: netlink read failed: {exc}") from None

    def _write(self, ifname: str, request: SetRequest) -> None:
        from pyroute2 import WireGuard

        try:
            with WireGuard() as wg:
                if request.private_key is not None or request.listen_port is not None or request.fwmark is not None:
                    wg.set(ifname, private_key=request.private_key, listen_port=request.listen_port, fwmark=request.fwmark)
                for op in peer_ops(request):
                    wg.set(ifname, peer=op)
        except Exception as exc:
            raise UapiError(f"WireGuard {ifname}: netlink write failed: {exc}") from None
