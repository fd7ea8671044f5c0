"""Kernel routes the gateway installs for babeld to redistribute (pyroute2).

pyroute2 is imported here at module level on purpose: its import takes about
a quarter of a second, which a gateway must not pay in the middle of a
fail-over (it did, before: the first announcement came 157 ms late).
"""

from __future__ import annotations

import asyncio
import errno
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshctl.config import Prefix
from meshctl.errors import MeshctlError


class RouteError(MeshctlError):
    """A kernel route could not be changed."""


def _replace(prefix: Prefix, ifname: str, proto: int) -> None:
    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=ifname)
            if not links:
                raise RouteError(f"cannot route {prefix}: no interface {ifname}")
            ipr.route("replace", dst=str(prefix), oif=links[0], proto=proto)
    except NetlinkError as exc:
        raise RouteError(f"cannot route {prefix} via {ifname}: {exc}") from None


def _delete(prefix: Prefix, ifname: str) -> bool:
    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=ifname)
            kwargs: dict[str, object] = {"dst": str(prefix)}
            if links:
                kwargs["oif"] = links[0]
            ipr.route("del", **kwargs)
            return True
    except NetlinkError as exc:
        if exc.code == errno.ESRCH:
            return False  # already gone: withdrawing twice is fine
        raise RouteError(f"cannot withdraw {prefix}: {exc}") from None


def _handoff(prefix: Prefix, via: str, ifname: str, proto: int, metric: int) -> None:
    family = socket.AF_INET6 if ":" in via else socket.AF_INET
    try:
        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=ifname)
            if not links:
                raise RouteError(f"cannot hand {prefix} off: no interface {ifname}")
            ipr.route("replace", dst=str(prefix), oif=links[0], proto=proto, priority=metric,
                      via={"family": family, "addr": via})
    except NetlinkError as exc:
        raise RouteError(f"cannot hand {prefix} off via {via}: {exc}") from None


def _drop_handoff(prefix: Prefix, proto: int, metric: int) -> None:
    try:
        with IPRoute() as ipr:
            ipr.route("del", dst=str(prefix), proto=proto, priority=metric)
    except NetlinkError as exc:
        if exc.code != errno.ESRCH:
            raise RouteError(f"cannot remove handoff route {prefix}: {exc}") from None


async def handoff(prefix: Prefix, via: str, ifname: str, proto: int, metric: int) -> None:
    """A low-priority route toward the mesh that bridges the moment before babeld installs its own."""
    await asyncio.to_thread(_handoff, prefix, via, ifname, proto, metric)


async def drop_handoff(prefix: Prefix, proto: int, metric: int) -> None:
    """Remove a handoff route (missing is fine)."""
    await asyncio.to_thread(_drop_handoff, prefix, proto, metric)


async def announce(prefixes: tuple[Prefix, ...], ifname: str, proto: int) -> None:
    """Route ``prefixes`` into ``ifname`` with ``proto`` (babeld redistributes it)."""
    for p in prefixes:
        await asyncio.to_thread(_replace, p, ifname, proto)


async def withdraw(prefixes: tuple[Prefix, ...], ifname: str) -> None:
    """Remove our routes for ``prefixes`` through ``ifname`` (missing ones are fine)."""
    for p in prefixes:
        await asyncio.to_thread(_delete, p, ifname)
