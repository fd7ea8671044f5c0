"""ICMP echo for the end-to-end check: packets in and out, no sockets.

IPv4 raw sockets hand us the IP header too and leave the checksum to us;
ICMPv6 raw sockets give the ICMP message only and have the kernel compute the
checksum (RFC 3542), so the IPv6 request goes out with a zero one.
"""

from __future__ import annotations

import struct

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
PAYLOAD = b"meshctl-check\x00\x00\x00"  # recognisable in a capture


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int) -> bytes:
    """An echo request with our identifier and sequence number."""
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if family == 6:
        return header + PAYLOAD
    return struct.pack("!BBHHH", ECHO_REQUEST[4], 0, checksum(header + PAYLOAD), ident & 0xFFFF,
                       seq & 0xFFFF) + PAYLOAD


def echo_reply_seq(family: int, data: bytes, ident: int) -> int | None:
    """The sequence number of an echo reply to us (our identifier), or None for anything else."""
    if family == 4:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8:
        return None
    kind, code, _, got_ident, seq = struct.unpack("!BBHHH", data[:8])
    if kind != ECHO_REPLY[family] or code != 0 or got_ident != ident & 0xFFFF:
        return None
    return int(seq)
