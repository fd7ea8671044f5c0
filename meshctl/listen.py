"""Listen addresses as operators write them: ``[::1]:9474``, ``127.0.0.1:9474``."""

from __future__ import annotations

import ipaddress

DEFAULT_METRICS = "[::1]:9474"  # the port meshctl asked for on the Prometheus default port allocations page


def parse_listen(text: str) -> tuple[str, int]:
    """``[::1]:9474`` or ``127.0.0.1:9474`` to (host, port); ValueError if not."""
    wrong = ValueError(f"must be ADDRESS:PORT or [IPV6]:PORT with an IP address (no names), not {text!r}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise wrong
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise wrong  # an IPv6 address needs its brackets, or the port is ambiguous
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise wrong from None
    return host, int(port_text)
