"""Link automation without I/O: which endpoint a managed tunnel should use.

A neighbour may offer several endpoints (two uplinks, IPv4 and IPv6, a LAN
and a WAN address).  A tunnel is alive while packets come from the
neighbour: with a persistent keepalive they do every few seconds even when
idle, so received bytes that stop growing mean the path is gone.  Then the
tunnel moves to the neighbour's next endpoint, round robin, and waits as
long again before it judges that one.  WireGuard's roaming does the rest on
the other side: the neighbour learns our new source address from our next
handshake.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EndpointState:
    """Where one managed tunnel points, and when it last heard its neighbour."""

    endpoints: tuple[str, ...]
    current: int = 0
    rx_bytes: int = -1  # -1: not read yet
    heard: float = 0.0  # last time rx_bytes grew (or when we started on this endpoint)

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.current]


def observe(state: EndpointState, rx_bytes: int, now: float, dead_after: float) -> tuple[EndpointState, str | None]:
    """Feed one reading of the peer's received bytes; returns the new state and, to move, the endpoint to use."""
    if rx_bytes > state.rx_bytes >= 0 or state.rx_bytes < 0:
        return EndpointState(state.endpoints, state.current, rx_bytes, now), None
    if rx_bytes < state.rx_bytes:  # the device was re-created: counters start again
        return EndpointState(state.endpoints, state.current, rx_bytes, now), None
    if now - state.heard < dead_after or len(state.endpoints) < 2:
        return state, None
    nxt = (state.current + 1) % len(state.endpoints)
    return EndpointState(state.endpoints, nxt, rx_bytes, now), state.endpoints[nxt]


def interface_name(neighbour: str, prefix: str = "mc-") -> str:
    """A Linux interface name for the tunnel to ``neighbour`` (at most 15 characters, no odd characters)."""
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in neighbour)
    return (prefix + clean)[:15]
