"""Reads into one kept buffer hand out bytes of their own, exactly what arrived."""

from __future__ import annotations

import socket

from meshctl.recvbuf import RecvBuffer

SO_TIMESTAMPNS = 35  # Linux on x86 and arm; Python's socket module does not name it


def test_a_stream_read_is_what_arrived_and_outlives_the_next_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        buf = RecvBuffer(8)
        a.sendall(b"hello")
        first = buf.recv(b)
        a.sendall(b"0123456789")
        second = buf.recv(b)  # at most the buffer's size; the rest waits for the next read
        assert (first, second, buf.recv(b)) == (b"hello", b"01234567", b"89")
        assert type(first) is bytes
        a.shutdown(socket.SHUT_WR)
        assert buf.recv(b) == b""  # the end of the stream


def test_a_datagram_comes_with_its_sender_and_a_longer_one_is_cut_to_the_buffer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        buf = RecvBuffer(16)
        tx.sendto(b"probe", rx.getsockname())
        tx.sendto(b"y" * 40, rx.getsockname())
        assert buf.recvfrom(rx) == (b"probe", tx.getsockname())
        assert buf.recvfrom(rx) == (b"y" * 16, tx.getsockname())


def test_recvmsg_brings_the_ancillary_data_too() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        tx.bind(("127.0.0.1", 0))
        tx.sendto(b"answer", rx.getsockname())
        data, ancillary, flags, addr = RecvBuffer(64).recvmsg(rx, 64)
        assert (data, flags, addr) == (b"answer", 0, tx.getsockname())
        assert [(level, kind) for level, kind, _ in ancillary] == [(socket.SOL_SOCKET, SO_TIMESTAMPNS)]
