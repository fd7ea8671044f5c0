"""The idle-CPU floor of an uplink client in CPython: its unavoidable I/O and nothing else.

An idle meshctl client, whatever its logic, must on every probe round send one authenticated probe
to each gateway, take their answers, and read what babeld said.  This program does exactly that, the
way the daemon does it (asyncio; a probe round on the grid k * interval; msgpack and HMAC-SHA256 of
the same size; the answers and babeld read together ``answers_after`` later) and decides nothing:
its CPU beside babeld's shows what any Python client with this probe rate costs, and the daemon's
CPU beside it shows what meshctl's own logic adds.  The answers come from an echo (``echo PORT``, a
process of its own, not measured) on the node's loopback: a datagram through WireGuard costs the
sender a little more.

    python bench/idle_floor.py echo PORT
    python bench/idle_floor.py client BABEL_SOCKET PORT GATEWAYS INTERVAL
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import sys
import time

import msgpack

ANSWERS_AFTER = 0.01  # meshctl.beat.answers_after for intervals >= 0.04 s


def echo(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


async def client(babel: str, port: int, gateways: int, interval: float) -> None:
    keyed = hmac.new(b"floor" * 8, digestmod=hashlib.sha256)

    def mac(body: bytes) -> bytes:
        state = keyed.copy()
        state.update(body)
        return state.digest()

    loop = asyncio.get_running_loop()
    probes = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probes.setblocking(False)
    babeld = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    babeld.connect(babel.removeprefix("unix:"))
    babeld.sendall(b"monitor\n")
    babeld.setblocking(False)
    seq = time.time_ns()
    while True:
        now = loop.time()
        await asyncio.sleep((int(now / interval) + 1) * interval - now)
        for _ in range(gateways):
            seq += 1
            body = msgpack.packb({"v": 2, "k": "probe", "s": "client", "n": seq, "t": time.time(), "r": [2, 1],
                                  "p": ["10.200.0.0/24", "2001:db8:200::/64"]})
            probes.sendto(body + mac(body), ("127.0.0.1", port))
        await asyncio.sleep(ANSWERS_AFTER)
        while True:
            try:
                data = probes.recv(2048)
            except BlockingIOError:
                break
            if hmac.compare_digest(data[-32:], mac(data[:-32])):
                msgpack.unpackb(data[:-32])
        while True:
            try:
                chunk = babeld.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                return
            chunk.split(b"\n")


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(int(sys.argv[2]))
    else:
        asyncio.run(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
