"""Network devices for managed tunnels (pyroute2): create a kernel WireGuard device, bring a link up."""

from __future__ import annotations

import asyncio
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshctl.errors import MeshctlError


class NetdevError(MeshctlError):
    """A network device could not be created or changed."""


def _up(ifname: str) -> None:
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        raise NetdevError(f"no interface {ifname}") from None
    try:
        with IPRoute() as ipr:
            ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise NetdevError(f"cannot bring {ifname} up: {exc}") from None


def _create_wireguard(ifname: str) -> None:
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=ifname, kind="wireguard")
    except NetlinkError as exc:
        raise NetdevError(f"cannot create WireGuard device {ifname}: {exc}") from None


def _delete(ifname: str) -> None:
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return
    try:
        with IPRoute() as ipr:
            ipr.link("del", index=index)
    except NetlinkError as exc:
        raise NetdevError(f"cannot delete {ifname}: {exc}") from None


async def link_up(ifname: str) -> None:
    await asyncio.to_thread(_up, ifname)


async def create_wireguard(ifname: str) -> None:
    await asyncio.to_thread(_create_wireguard, ifname)


async def delete_link(ifname: str) -> None:
    await asyncio.to_thread(_delete, ifname)


def exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False
