"""WireGuard backends behind one Protocol: wireguard-go UAPI, kernel netlink, memory.

The kernel backend is chosen where the wireguard module is loaded; otherwise
UAPI (wireguard-go, boringtun).  The memory backend is a real implementation
with WireGuard's AllowedIPs semantics, used by the daemon's own tests.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from meshctl.wireguard.diff import apply_to, diff
from meshctl.wireguard.state import Device
from meshctl.wireguard.uapi import SetRequest, UapiError
from meshctl.wireguard.uapi_client import SOCKET_DIR, socket_path, uapi_get, uapi_set


class Backend(Protocol):
    """Read a device; apply one ``set`` atomically."""

    name: str

    async def read(self, ifname: str) -> Device:
        """Current state (raises :class:`UapiError` when the device is gone)."""

    async def write(self, ifname: str, request: SetRequest) -> None:
        """Apply one request in one operation."""


async def converge(backend: Backend, desired: Device) -> Device:
    """Read, diff, write once; return the device as it stands (read again only after a write)."""
    device = await backend.read(desired.name)
    request = diff(desired, device)
    if request is not None:
        await backend.write(desired.name, request)
        device = await backend.read(desired.name)
    return device


class UapiBackend:
    """wireguard-go / boringtun through ``/var/run/wireguard/NAME.sock``."""

    name = "uapi"

    def __init__(self, directory: str = SOCKET_DIR, timeout: float = 2.0) -> None:
        self.directory = directory
        self.timeout = timeout

    async def read(self, ifname: str) -> Device:
        return await uapi_get(ifname, self.directory, self.timeout)

    async def write(self, ifname: str, request: SetRequest) -> None:
        await uapi_set(ifname, request, self.directory, self.timeout)

    def available(self, ifname: str) -> bool:
        """Is there a UAPI socket for this interface?"""
        return os.path.exists(socket_path(ifname, self.directory))


class MemoryBackend:
    """Devices in a dict, with WireGuard's semantics (see ``diff.apply_to``)."""

    name = "memory"

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.writes: list[tuple[str, SetRequest]] = []
        self.fail_next: Exception | None = None

    async def read(self, ifname: str) -> Device:
        if ifname not in self.devices:
            raise UapiError(f"WireGuard {ifname}: no such device")
        return self.devices[ifname]

    async def write(self, ifname: str, request: SetRequest) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if ifname not in self.devices:
            raise UapiError(f"WireGuard {ifname}: no such device")
        self.writes.append((ifname, request))
        self.devices[ifname] = apply_to(self.devices[ifname], request)

    def handshake(self, ifname: str, public_key: str, when: float | None = None) -> None:
        """Pretend a handshake with a peer completed (tests)."""
        from dataclasses import replace

        dev = self.devices[ifname]
        stamp = time.time() if when is None else when
        peers = tuple(replace(p, last_handshake=stamp) if p.public_key == public_key else p for p in dev.peers)
        self.devices[ifname] = replace(dev, peers=peers)


def kernel_module_loaded() -> bool:
    """True where the in-kernel WireGuard is available (then netlink is preferred)."""
    return os.path.isdir("/sys/module/wireguard")


def choose_backend(ifname: str) -> Backend:
    """The kernel backend if that interface is a kernel WireGuard device, else UAPI."""
    if os.path.exists(socket_path(ifname)) or not kernel_module_loaded():
        return UapiBackend()
    from meshctl.wireguard.netlink import NetlinkBackend

    return NetlinkBackend()
