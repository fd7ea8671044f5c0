"""Network devices for managed tunnels (pyroute2): create a kernel WireGuard device, bring a link up.

pyroute2's asyncio API, on the daemon's loop: no thread per call (see :mod:`meshctl.uplink.routes`).
"""

from __future__ import annotations

import hashlib
import socket

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshctl.errors import MeshctlError

LINK_SCOPE = 253  # RT_SCOPE_LINK
IFA_F_NODAD = 0x02  # no duplicate address detection: the other end is one peer, not a LAN


class NetdevError(MeshctlError):
    """A network device could not be created or changed."""


def _index(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise NetdevError(f"no interface {ifname}") from None


async def link_up(ifname: str) -> None:
    index = _index(ifname)
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise NetdevError(f"cannot bring {ifname} up: {exc}") from None


async def ensure_link_local(ifname: str, address: str) -> bool:
    """Give ``ifname`` the IPv6 link-local ``address`` unless it has one (True if added).

    babeld speaks from a link-local address.  The kernel gives TUN devices
    (wireguard-go) a random one, but not kernel WireGuard devices, which have
    no hardware address to derive one from.
    """
    index = _index(ifname)
    try:
        async with AsyncIPRoute() as ipr:
            async for a in await ipr.get_addr(index=index, family=socket.AF_INET6):
                if a.get("scope") == LINK_SCOPE:
                    return False
            await ipr.addr("add", index=index, address=address, prefixlen=64, flags=IFA_F_NODAD)
            return True
    except NetlinkError as exc:
        raise NetdevError(f"cannot add {address} to {ifname}: {exc}") from None


def link_local_for(*names: str) -> str:
    """A stable link-local address for a tunnel, from the names at both ends."""
    digest = hashlib.sha256("\0".join(names).encode()).digest()[:8]
    groups = [int.from_bytes(digest[i:i + 2], "big") for i in range(0, 8, 2)]
    return "fe80::" + ":".join(f"{g:x}" for g in groups)


async def create_wireguard(ifname: str) -> None:
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.link("add", ifname=ifname, kind="wireguard")
    except NetlinkError as exc:
        raise NetdevError(f"cannot create WireGuard device {ifname}: {exc}") from None


async def delete_link(ifname: str) -> None:
    if not exists(ifname):
        return
    index = _index(ifname)
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.link("del", index=index)
    except NetlinkError as exc:
        raise NetdevError(f"cannot delete {ifname}: {exc}") from None


def exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False
