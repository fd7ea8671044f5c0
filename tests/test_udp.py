"""The gateway's control stream on a real socket (loopback): what its reads hand on, and how much they ask for."""

from __future__ import annotations

import os
import socket

import pytest

from meshctl.udp import BoundStream
from meshctl.uplink.control import MAX_DATAGRAM, ControlError, Message, decode, encode

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs CAP_NET_RAW")
SECRET = b"s" * 32


@needs_root
async def test_the_stream_reads_no_more_than_one_byte_past_the_longest_datagram_and_refuses_a_longer_one() -> None:
    stream = BoundStream("127.0.0.1", 0, "lo", "test", MAX_DATAGRAM)
    await stream.open()
    try:
        assert stream.stream is not None and stream.sock is not None
        # asyncio's transport would ask for 256 KiB per datagram and shrink the block after: the heap grows.
        assert stream.stream._transport.max_size == MAX_DATAGRAM + 1  # type: ignore[attr-defined]
        here = stream.sock.getsockname()
        probe = encode(Message("probe", "client", 1, 100.0, prefixes=("10.0.0.0/8",) * 16), SECRET)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind(("127.0.0.1", 0))
            sender = tx.getsockname()
            tx.sendto(probe, here)
            tx.sendto(b"x" * MAX_DATAGRAM, here)
            tx.sendto(b"y" * (MAX_DATAGRAM + 1), here)
            tx.sendto(probe + b"z" * 4000, here)  # longer than allowed: cut, but still too long to pass
            got = [await stream.recv() for _ in range(4)]
        assert [addr for _, addr in got] == [sender] * 4
        assert decode(got[0][0], SECRET, 100.0).prefixes == ("10.0.0.0/8",) * 16
        assert [len(data) for data, _ in got[1:]] == [MAX_DATAGRAM, MAX_DATAGRAM + 1, MAX_DATAGRAM + 1]
        for data, _ in got[2:]:
            with pytest.raises(ControlError) as refused:
                decode(data, SECRET, 100.0)
            assert refused.value.reason == "oversized"
    finally:
        stream.close()
