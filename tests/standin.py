"""A stand-in babeld on a unix socket, in a thread: for tests that run meshctl's CLI or daemon against
a babeld that says exactly what the test wants (UTF-8 names, a line malformed every time, huge tables).

It speaks enough of babeld's local interface: the banner, then ``ok`` after the table for ``dump``
and ``monitor``, ``bad`` for anything else; after ``monitor`` it keeps the connection open and
sends ``after_monitor`` once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost standin\nmy-id 02:00:00:00:00:00:00:01\nok\n"


def route_lines(count: int, interfaces: int = 4) -> bytes:
    """``count`` distinct routes (10.x.y.z/32) through ``interfaces`` neighbours, one neighbour line each."""
    lines = [
        f"add neighbour {0x5500 + i:x} address fe80::{i + 1:x} if wg{i} reach ffff ureach 0000 rxcost 96 txcost 96 "
        f"cost 96"
        for i in range(interfaces)
    ]
    for r in range(count):
        n = r % interfaces
        lines.append(
            f"add route {0x7700000 + r:x} prefix 10.{r >> 16 & 0xFF}.{r >> 8 & 0xFF}.{r & 0xFF}/32 from 0.0.0.0/0 "
            f"installed yes id 02:00:00:00:00:{r >> 16 & 0xFF:02x}:{r >> 8 & 0xFF:02x}:{r & 0xFF:02x} "
            f"metric {96 + r % 500} refmetric {r % 500} via fe80::{n + 1:x} if wg{n}"
        )
    return ("\n".join(lines) + "\n").encode()


class StandIn:
    """What the stand-in says, and what it saw."""

    def __init__(self, path: str, table: bytes, after_monitor: bytes = b"") -> None:
        self.path = path
        self.table = table
        self.after_monitor = after_monitor
        self.connections = 0
        self.commands: list[str] = []
        self._lock = threading.Lock()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        conn.sendall(BANNER)
        with conn.makefile("rb") as lines:
            for raw in lines:
                command = raw.decode().strip()
                with self._lock:
                    self.commands.append(command)
                if command in ("dump", "monitor"):
                    conn.sendall(self.table + b"ok\n")
                    if command == "monitor" and self.after_monitor:
                        conn.sendall(self.after_monitor)
                elif command == "quit":
                    return
                else:
                    conn.sendall(b"bad\n")


@contextmanager
def standin_babeld(directory: str, table: bytes, after_monitor: bytes = b"") -> Iterator[StandIn]:
    """Serve a stand-in babeld at ``DIRECTORY/babel.sock`` until the block ends."""
    state = StandIn(os.path.join(directory, "babel.sock"), table, after_monitor)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client went away
                state._serve(self.request)

    server = socketserver.ThreadingUnixStreamServer(state.path, Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
