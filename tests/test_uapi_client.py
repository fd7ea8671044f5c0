"""The UAPI client against a stand-in wireguard-go on a temporary unix socket."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from meshctl.wireguard.uapi import UapiError
from meshctl.wireguard.uapi_client import uapi_get

REPLY = (b"private_key=" + b"a0" * 32 + b"\nlisten_port=51820\npublic_key=" + b"b1" * 32
         + b"\nendpoint=10.0.0.1:51820\nallowed_ip=10.0.0.0/24\nlast_handshake_time_sec=5\n"
         + b"last_handshake_time_nsec=0\nerrno=0\n\n")


async def _serve(path: Path, reply: bytes | None) -> asyncio.Server:
    """Answers ``get=1`` with ``reply`` in two pieces and keeps the socket open, as wireguard-go does."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            assert await reader.readuntil(b"\n\n") == b"get=1\n\n"
            if reply is not None:
                writer.write(reply[:40])
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(reply[40:])
                await writer.drain()
            await asyncio.sleep(1)
        writer.close()

    return await asyncio.start_unix_server(handle, str(path))


async def test_a_reply_in_pieces_ends_at_its_errno_line(tmp_path: Path) -> None:
    server = await _serve(tmp_path / "wgt.sock", REPLY)
    async with server:
        device = await uapi_get("wgt", str(tmp_path))
    assert device.listen_port == 51820
    assert [p.endpoint for p in device.peers] == ["10.0.0.1:51820"]


async def test_no_socket_and_no_answer_are_uapi_errors(tmp_path: Path) -> None:
    with pytest.raises(UapiError, match="no UAPI socket"):
        await uapi_get("absent", str(tmp_path))
    server = await _serve(tmp_path / "wgs.sock", None)
    async with server:
        with pytest.raises(UapiError, match="no UAPI reply within 0.2s"):
            await uapi_get("wgs", str(tmp_path), timeout=0.2)
