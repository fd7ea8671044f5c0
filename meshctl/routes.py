"""Kernel routes the gateway installs for babeld to redistribute (pyroute2)."""

from __future__ import annotations

import asyncio
import errno

from meshctl.config import Prefix
from meshctl.errors import MeshctlError


class RouteError(MeshctlError):
    """A kernel route could not be changed."""


def _replace(prefix: Prefix, ifname: str, proto: int) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=ifname)
            if not links:
                raise RouteError(f"cannot route {prefix}: no interface {ifname}")
            ipr.route("replace", dst=str(prefix), oif=links[0], proto=proto)
    except NetlinkError as exc:
        raise RouteError(f"cannot route {prefix} via {ifname}: {exc}") from None


def _delete(prefix: Prefix, ifname: str, proto: int) -> bool:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=ifname)
            kwargs = {"dst": str(prefix), "proto": proto}
            if links:
                kwargs["oif"] = links[0]
            ipr.route("del", **kwargs)
            return True
    except NetlinkError as exc:
        if exc.code == errno.ESRCH:
            return False  # already gone: withdrawing twice is fine
        raise RouteError(f"cannot withdraw {prefix}: {exc}") from None


async def announce(prefixes: tuple[Prefix, ...], ifname: str, proto: int) -> None:
    """Route ``prefixes`` into ``ifname`` with ``proto`` (babeld redistributes it)."""
    for p in prefixes:
        await asyncio.to_thread(_replace, p, ifname, proto)


async def withdraw(prefixes: tuple[Prefix, ...], ifname: str, proto: int) -> None:
    """Remove those routes (missing ones are fine)."""
    for p in prefixes:
        await asyncio.to_thread(_delete, p, ifname, proto)
