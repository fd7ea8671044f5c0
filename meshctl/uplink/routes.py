"""Kernel routes the gateway installs for babeld to redistribute (pyroute2).

pyroute2 is imported here at module level on purpose: its import takes about
a quarter of a second, which a gateway must not pay in the middle of a
fail-over (it did, before: the first announcement came 157 ms late).

Its asyncio API runs on the daemon's own loop.  The blocking ``IPRoute`` would
need a thread (it runs an event loop of its own), and each thread that talks
netlink keeps a malloc arena and a stack: about 0.45 MB each on a gateway,
which had three.  A route write also takes half the time this way (0.8 ms
against 1.7 ms, median, on the lab).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from meshctl.config import Prefix
from meshctl.errors import MeshctlError


class RouteError(MeshctlError):
    """A kernel route could not be changed."""


def _index(ifname: str) -> int | None:
    """The interface's index (an ioctl; pyroute2's link_lookup dumps every link)."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


async def _replace(prefix: Prefix, ifname: str, what: str, **attrs: object) -> None:
    """``ip route replace PREFIX dev IFNAME ...attrs``; ``what`` words the error."""
    index = _index(ifname)
    if index is None:
        raise RouteError(f"{what}: no interface {ifname}")
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.route("replace", dst=str(prefix), oif=index, **attrs)
    except NetlinkError as exc:
        raise RouteError(f"{what}: {exc}") from None


async def _delete(what: str, ifname: str | None = None, **match: object) -> bool:
    """``ip route del`` matching ``match`` (and ``dev IFNAME`` while it exists).

    False if there was no such route: deleting twice is fine.
    """
    index = _index(ifname) if ifname else None
    if index is not None:
        match["oif"] = index
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.route("del", **match)
            return True
    except NetlinkError as exc:
        if exc.code == errno.ESRCH:
            return False
        raise RouteError(f"{what}: {exc}") from None


def next_hop(prefix: Prefix, via: str | None) -> dict[str, object]:
    """The next-hop attribute: a gateway of the prefix's own family, or RTA_VIA for an IPv4 route through an
    IPv6 next hop (babeld's kind: the mesh's next hops are link-local IPv6 addresses)."""
    if via is None:
        return {}
    family = socket.AF_INET6 if ":" in via else socket.AF_INET
    if family == (socket.AF_INET6 if prefix.version == 6 else socket.AF_INET):
        return {"gateway": via}
    return {"via": {"family": family, "addr": via}}


async def announce(prefixes: tuple[Prefix, ...], ifname: str, proto: int, via: str | None = None) -> None:
    """Route ``prefixes`` into ``ifname`` (through next hop ``via``) with ``proto``: babeld redistributes it."""
    for p in prefixes:
        await _replace(p, ifname, f"cannot route {p} via {via or ifname}", proto=proto, **next_hop(p, via))


async def _ours(protos: tuple[int, ...]) -> list[tuple[Prefix, int, str | None, str | None]]:
    found = []
    async with AsyncIPRoute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            async for r in await ipr.route("dump", family=family):
                if r.get("proto") not in protos or r.get("table") != 254:
                    continue
                dst = r.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                prefix = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                via = r.get_attr("RTA_GATEWAY")
                if via is None and r.get_attr("RTA_VIA") is not None:
                    via = r.get_attr("RTA_VIA").get("addr")
                oif = r.get_attr("RTA_OIF")
                try:
                    dev = socket.if_indextoname(oif) if oif else None
                except OSError:
                    dev = None
                found.append((prefix, int(r["proto"]), via, dev))
    return found


async def ours(protos: tuple[int, ...]) -> list[tuple[Prefix, int, str | None, str | None]]:
    """Main-table routes with one of our protocols: (prefix, protocol, next hop or None, device or None)."""
    try:
        return await _ours(protos)
    except NetlinkError as exc:
        raise RouteError(f"cannot list routes: {exc}") from None


#: Routes for control datagrams over IPv6 (see :func:`control_routes`): below every other route
#: (babeld's are 0 and 1024), in no protocol babeld redistributes.
CONTROL_METRIC = 4096
CONTROL_PROTO = 4  # "static"


async def control_routes(prefixes: tuple[Prefix, ...], ifname: str) -> None:
    """Routes for the peers' IPv6 control addresses through a WireGuard device.

    A UDP socket tied to a device (SO_BINDTODEVICE) sends over IPv4 even with
    no route, but over IPv6 only where a route through that device exists.
    A client needs one to each gateway's control address; a gateway to each
    client's address, since a backup gateway has no route to its client
    (only the chosen one announces it).  At the lowest priority they carry
    nothing but control datagrams: every other route, babeld's or ours, wins.
    """
    for p in prefixes:
        if p.version == 6:
            await _replace(p, ifname, f"cannot route control datagrams to {p} via {ifname}", proto=CONTROL_PROTO,
                           priority=CONTROL_METRIC)


async def withdraw(prefixes: tuple[Prefix, ...], protos: tuple[int, ...]) -> None:
    """Remove our routes for ``prefixes`` (those with one of our ``protos``; missing ones are fine)."""
    for p in prefixes:
        for proto in protos:
            await _delete(f"cannot withdraw {p}", dst=str(p), proto=proto)
