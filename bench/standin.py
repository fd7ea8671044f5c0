"""A stand-in babeld on a unix socket: for tests and benchmarks that run meshctl's CLI or daemon against
a babeld that says exactly what they want (UTF-8 names, a line malformed every time, huge tables).
In a thread (:func:`standin_babeld`) or as its own process (``python -m bench.standin PATH ROUTES``,
so a benchmark's client does not share an interpreter with it).

It speaks enough of babeld's local interface: the banner, then ``ok`` after the table for ``dump``
and ``monitor``, ``bad`` for anything else; after ``monitor`` it keeps the connection open and
sends ``after_monitor`` once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost standin\nmy-id 02:00:00:00:00:00:00:01\nok\n"


def route_lines(count: int, interfaces: int = 4) -> bytes:
    """``count`` distinct routes (10.x.y.z/32, four from each router) through ``interfaces`` neighbours."""
    lines = [
        f"add neighbour {0x5500 + i:x} address fe80::{i + 1:x} if wg{i} reach ffff ureach 0000 rxcost 96 txcost 96 "
        f"cost 96"
        for i in range(interfaces)
    ]
    for r in range(count):
        n = r % interfaces
        lines.append(
            f"add route {0x7700000 + r:x} prefix 10.{r >> 16 & 0xFF}.{r >> 8 & 0xFF}.{r & 0xFF}/32 from 0.0.0.0/0 "
            f"installed yes id 02:00:00:00:00:{r >> 18 & 0xFF:02x}:{r >> 10 & 0xFF:02x}:{r >> 2 & 0xFF:02x} "
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


def main() -> None:
    """Serve ``ROUTES`` routes at ``PATH`` until SIGTERM; print ``ready`` once listening."""
    path, count = sys.argv[1], int(sys.argv[2])
    table = route_lines(count)
    with standin_babeld(os.path.dirname(path), table) as state:
        assert state.path == path, "the socket is DIR/babel.sock"
        print("ready", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
