"""The daemon's control socket (a unix socket): one request line, one JSON answer.

``meshctl status`` and ``topology dump --mesh`` ask the running daemon here
instead of opening a connection of their own to babeld, which serves only
four local clients at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from meshctl.errors import MeshctlError


async def serve_control(path: str, answers: dict[str, Callable[[], dict[str, Any]]]) -> asyncio.AbstractServer:
    """Serve ``answers`` (request word -> what to say) on a unix socket at ``path``, group-readable."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

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
    return json.loads(data)
