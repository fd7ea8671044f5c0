"""Desired vs actual WireGuard state -> the smallest ``set`` that gets there.

Theory of operation
-------------------
WireGuard's AllowedIPs are a routing table: giving prefix X to peer B takes X
away from peer A *in the same step*, so every packet sees A or B, never
neither.  Removing X from A first, or ``replace_allowed_ips`` on B, opens a
window in which X belongs to nobody and packets are dropped.  So:

1. peers that gain prefixes come first, add-only (no replace);
2. a peer only gets ``replace_allowed_ips`` if it must lose a prefix that no
   other peer is about to take over; prefixes taken by step 1 are already
   gone from it;
3. peers to remove come last.  Never ``replace_peers``: that destroys every
   session, warm backups included.

Applying the result twice changes nothing (the second diff is empty).
"""

from __future__ import annotations

from meshctl.wireguard.state import Device, Peer, Prefix
from meshctl.wireguard.uapi import SetPeer, SetRequest


def _sorted(prefixes: set[Prefix] | frozenset[Prefix]) -> tuple[Prefix, ...]:
    return tuple(sorted(prefixes, key=lambda p: (p.version, p)))


def diff(desired: Device, actual: Device | None, *, remove_unknown: bool = True) -> SetRequest | None:
    """The ``set`` turning ``actual`` into ``desired``; None when nothing differs.

    ``desired.private_key`` and ``listen_port`` are only sent when they differ
    (``actual`` None means a fresh device: everything is sent).
    """
    have: dict[str, Peer] = {p.public_key: p for p in (actual.peers if actual else ())}
    want: dict[str, Peer] = {p.public_key: p for p in desired.peers}
    claimed: set[Prefix] = set()
    gains: list[SetPeer] = []
    losses: list[SetPeer] = []

    for key, peer in want.items():
        old = have.get(key)
        if old is None:
            gains.append(
                SetPeer(
                    public_key=key,
                    endpoint=peer.endpoint,
                    persistent_keepalive=peer.persistent_keepalive,
                    allowed_ips=_sorted(peer.allowed_ips),
                )
            )
            claimed |= peer.allowed_ips
            continue
        added = peer.allowed_ips - old.allowed_ips
        endpoint = peer.endpoint if peer.endpoint and peer.endpoint != old.endpoint else None
        keepalive = peer.persistent_keepalive if peer.persistent_keepalive != old.persistent_keepalive else None
        if added or endpoint or keepalive is not None:
            gains.append(
                SetPeer(
                    public_key=key,
                    update_only=True,
                    endpoint=endpoint,
                    persistent_keepalive=keepalive,
                    allowed_ips=_sorted(added),
                )
            )
            claimed |= added

    for key, peer in want.items():
        old = have.get(key)
        if old is None:
            continue
        # What another peer takes over in step 1 is already gone from this one.
        lost = old.allowed_ips - peer.allowed_ips - claimed
        if lost:
            losses.append(
                SetPeer(public_key=key, update_only=True, replace_allowed_ips=True, allowed_ips=_sorted(peer.allowed_ips))
            )

    removals = [SetPeer(public_key=k, remove=True) for k in sorted(have) if k not in want] if remove_unknown else []

    private_key = None
    if desired.private_key and (actual is None or actual.private_key != desired.private_key):
        private_key = desired.private_key
    listen_port = None
    if desired.listen_port and (actual is None or actual.listen_port != desired.listen_port):
        listen_port = desired.listen_port
    fwmark = None
    if actual is not None and desired.fwmark != actual.fwmark or actual is None and desired.fwmark:
        fwmark = desired.fwmark

    peers = tuple(gains + losses + removals)
    if not peers and private_key is None and listen_port is None and fwmark is None:
        return None
    return SetRequest(private_key=private_key, listen_port=listen_port, fwmark=fwmark, peers=peers)


def apply_to(device: Device, request: SetRequest) -> Device:
    """What a device looks like after ``request``: WireGuard's semantics, in memory.

    Used by the in-memory backend and to check diffs: adding a prefix to one
    peer removes it from every other peer, as in WireGuard's routing table.
    """
    peers: dict[str, Peer] = {p.public_key: p for p in device.peers}
    order = [p.public_key for p in device.peers]
    for op in request.peers:
        if op.remove:
            peers.pop(op.public_key, None)
            continue
        old = peers.get(op.public_key)
        if old is None:
            if op.update_only:
                continue
            old = Peer(public_key=op.public_key)
            order.append(op.public_key)
        allowed = set() if op.replace_allowed_ips else set(old.allowed_ips)
        for prefix in op.allowed_ips:
            for other_key, other in list(peers.items()):
                if other_key != op.public_key and prefix in other.allowed_ips:
                    peers[other_key] = _with(other, allowed_ips=other.allowed_ips - {prefix})
            allowed.add(prefix)
        peers[op.public_key] = _with(
            old,
            endpoint=op.endpoint if op.endpoint is not None else old.endpoint,
            persistent_keepalive=op.persistent_keepalive if op.persistent_keepalive is not None else old.persistent_keepalive,
            allowed_ips=frozenset(allowed),
        )
    return Device(
        name=device.name,
        listen_port=request.listen_port if request.listen_port is not None else device.listen_port,
        private_key=request.private_key if request.private_key is not None else device.private_key,
        public_key=device.public_key,
        fwmark=request.fwmark if request.fwmark is not None else device.fwmark,
        peers=tuple(peers[k] for k in order if k in peers),
    )


def _with(peer: Peer, **changes: object) -> Peer:
    from dataclasses import replace

    return replace(peer, **changes)  # type: ignore[arg-type]
