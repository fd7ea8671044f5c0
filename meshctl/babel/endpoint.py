"""Where babeld's local interface listens: ``tcp:[::1]:PORT`` or ``unix:PATH``."""

from __future__ import annotations

import ipaddress

from meshctl.babel.errors import BabelError
from meshctl.records import record

DEFAULT_PORT = 33123


@record
class Endpoint:
    """A parsed local-interface address."""

    scheme: str  # "tcp" or "unix"
    host: str = "::1"
    port: int = DEFAULT_PORT
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``tcp:[::1]:33123``, ``tcp:127.0.0.1:33123``, ``tcp:33123``,
    ``unix:/run/babeld.sock`` or a bare absolute path.

    babeld only listens on loopback, so other hosts are refused here rather
    than timing out later.
    """
    if text.startswith("/"):
        return Endpoint("unix", path=text)
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("tcp", "unix") or not rest:
        raise BabelError(f"bad babeld address {text!r}: use tcp:[::1]:PORT or unix:PATH")
    if scheme == "unix":
        return Endpoint("unix", path=rest)
    host = "::1"
    port_text = rest
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close or not tail.startswith(":"):
            raise BabelError(f"bad babeld address {text!r}: expected tcp:[HOST]:PORT")
        port_text = tail[1:]
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise BabelError(f"bad port in babeld address {text!r}") from None
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise BabelError(f"babeld listens on loopback only; {host} is not loopback")
    except ValueError:
        if host != "localhost":
            raise BabelError(f"bad host in babeld address {text!r}") from None
    return Endpoint("tcp", host=host, port=port)
