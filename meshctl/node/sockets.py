"""The daemon's control socket (a unix socket): one request line, one JSON answer.

``meshctl status`` and ``topology dump --mesh`` ask the running daemon here
instead of opening a connection of their own to babeld, which serves only
four local clients at a time.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import stat
from collections.abc import Callable
from typing import Any

from meshctl.errors import MeshctlError


async def serve_control(path: str, answers: dict[str, Callable[[], dict[str, Any]]]) -> asyncio.AbstractServer:
    """Serve ``answers`` (request word -> what to say) on a unix socket at ``path``, group-readable."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    remove_stale_socket(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 2.0)
            answer = answers.get(line.strip().decode("ascii", "replace"))
            if answer is not None:
                writer.write(json.dumps(answer()).encode() + b"\n")
            else:
                writer.write(b'{"error": "unknown request"}\n')
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path)
    os.chmod(path, 0o660)
    return server


def remove_stale_socket(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse to remove anything that is not a socket.

    Call it holding the instance lock: then no live daemon serves ``path``.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = "directory" if stat.S_ISDIR(mode) else "file that is not a socket"
        raise MeshctlError(f"control socket {path} is a {kind}; meshctl replaces only a stale socket there")
    os.unlink(path)


def instance_lock(path: str) -> int:
    """Hold the lock that lets one daemon serve the control socket ``path``; returns the open descriptor.

    flock on ``PATH.lock``: the kernel drops it when the process dies, however
    it dies, so there is never a stale lock to clean up.  The file keeps the
    holder's PID for the message a second daemon prints.
    """
    lock = path + ".lock"
    try:
        os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise MeshctlError(f"cannot take the instance lock {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise MeshctlError(f"another meshctl daemon (pid {holder}) serves {path}; "
                           "one control socket, one daemon") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


async def query_status(path: str, timeout: float = 3.0) -> dict[str, Any]:
    """Ask a running daemon for its status over its control socket."""
    return await query(path, "status", timeout)


async def query(path: str, request: str, timeout: float = 3.0) -> dict[str, Any]:
    """Ask a running daemon over its control socket: ``status`` or ``mesh``."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(request.encode() + b"\n")
            await writer.drain()
            data = await reader.read()
            writer.close()
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or "timed out"
        raise MeshctlError(f"no meshctl daemon answering at {path}: {reason}") from None
    try:
        answer = json.loads(data)
    except ValueError:  # also not UTF-8
        raise MeshctlError(f"{path} answered {request!r} with {len(data)} bytes that are not JSON: "
                           "is a meshctl daemon listening there?") from None
    if not isinstance(answer, dict):
        raise MeshctlError(f"{path} answered {request!r} with JSON that is not an object: is a meshctl daemon listening there?")
    if set(answer) == {"error"}:  # the daemon did not know the request
        raise MeshctlError(f"the daemon at {path} refused {request!r}: {answer['error']}")
    return answer
