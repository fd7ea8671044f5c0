"""Talk UAPI to wireguard-go (or boringtun) over its unix socket.

The socket directory is shared by every network namespace of the machine,
which is why interface names must be unique machine-wide.
"""

from __future__ import annotations

import asyncio
import os
import socket

from meshctl.recvbuf import RecvBuffer
from meshctl.wireguard.state import Device
from meshctl.wireguard.uapi import SetRequest, UapiError, encode_get, encode_set, parse_errno, parse_get

SOCKET_DIR = "/var/run/wireguard"
MAX_REPLY = 1 << 20
READ_SIZE = 16384  # a device with a few dozen peers in one read


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    """Where ``wireguard-go NAME`` listens."""
    return os.path.join(directory, f"{name}.sock")


async def _exchange(name: str, request: bytes, directory: str, timeout: float) -> str:
    """One request, one reply, on a fresh connection.

    Straight on a non-blocking socket (the loop's sock_* calls), not through
    asyncio streams: a daemon reads each device every second, and a stream's
    transport, protocol, reader and writer per read cost more than the read.
    """
    path = socket_path(name, directory)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    chunks: list[bytes] = []
    buffer = RecvBuffer(READ_SIZE)  # one per exchange: reads for two devices may wait at once
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(sock, request)
            size = 0
            # A reply ends with "errno=N\n\n"; the peer keeps the socket open.
            while True:
                chunk = buffer.take(await loop.sock_recv_into(sock, buffer.view))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY:
                    raise UapiError(f"UAPI reply from {name} is over {MAX_REPLY} bytes")
                data = b"".join(chunks) if len(chunks) > 1 else chunk
                if b"errno=" in data and data.endswith(b"\n\n"):
                    break
    except TimeoutError:
        raise UapiError(f"WireGuard {name}: no UAPI reply within {timeout:g}s") from None
    except (FileNotFoundError, ConnectionRefusedError):
        raise UapiError(f"WireGuard {name}: no UAPI socket at {path} (is wireguard-go running?)") from None
    except OSError as exc:
        raise UapiError(f"WireGuard {name}: UAPI socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return b"".join(chunks).decode("ascii", "replace")


async def uapi_get(name: str, directory: str = SOCKET_DIR, timeout: float = 2.0) -> Device:
    """Read the whole device state."""
    return parse_get(name, await _exchange(name, encode_get(), directory, timeout))


async def uapi_set(name: str, request: SetRequest, directory: str = SOCKET_DIR, timeout: float = 2.0) -> None:
    """Apply one ``set`` request; raise :class:`UapiError` on errno != 0."""
    reply = await _exchange(name, encode_set(request), directory, timeout)
    errno = parse_errno(reply)
    if errno:
        raise UapiError(f"WireGuard {name}: UAPI set failed with errno {errno}", errno)
