"""The least a ``topology dump`` can do, as its own process: connect to babeld's local socket, ask
for ``dump``, read until the table's ``ok``, and split every line into tokens.  The baseline that
``meshctl topology dump`` is measured against (``python bench/split_client.py unix:PATH``)."""

import socket
import sys


def main() -> None:
    path = sys.argv[1].removeprefix("unix:")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(b"dump\n")
    tail, oks, tokens = b"", 0, 0
    while oks < 2:  # the banner's ok, then the dump's
        data = sock.recv(65536)
        if not data:
            break
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        for line in lines:
            words = line.decode().split()
            tokens += len(words)
            oks += words == ["ok"]
    print(tokens)


main()
