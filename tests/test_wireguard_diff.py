"""Desired-vs-actual diff: minimal, idempotent, and never leaves a prefix ownerless."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.wireguard.diff import apply_to, diff
from meshctl.wireguard.keys import KeyPair
from meshctl.wireguard.state import Device, Peer
from meshctl.wireguard.uapi import SetPeer, SetRequest

A, B, C = (KeyPair.generate().public for _ in range(3))
PRIV = KeyPair.generate().private
X = ipaddress.ip_network("0.0.0.0/0")
Y = ipaddress.ip_network("::/0")
GA = ipaddress.ip_network("10.97.0.2/32")
GB = ipaddress.ip_network("10.97.0.3/32")


def dev(*peers: Peer, **kw: object) -> Device:
    return Device("wgup", listen_port=51900, private_key=PRIV, peers=peers, **kw)  # type: ignore[arg-type]


def peer(key: str, *prefixes: object, endpoint: str = "10.250.0.2:51900", keepalive: int = 10) -> Peer:
    return Peer(key, endpoint, frozenset(prefixes), keepalive)  # type: ignore[arg-type]


def test_fresh_device_gets_everything() -> None:
    want = dev(peer(A, X, GA), peer(B, GB))
    request = diff(want, None)
    assert request is not None and request.private_key == PRIV and request.listen_port == 51900
    assert [p.public_key for p in request.peers] == [A, B]
    assert not any(p.replace_allowed_ips or p.update_only for p in request.peers)


def test_failover_is_one_add_only_peer_op() -> None:
    actual = dev(peer(A, X, Y, GA), peer(B, GB))
    desired = dev(peer(A, GA), peer(B, X, Y, GB))
    request = diff(desired, actual)
    assert request == SetRequest(peers=(SetPeer(B, update_only=True, allowed_ips=(X, Y)),))
    after = apply_to(actual, request)
    assert after.peer(A).allowed_ips == {GA}
    assert after.peer(B).allowed_ips == {X, Y, GB}
    assert diff(desired, after) is None


def test_a_real_loss_uses_replace_after_the_gains() -> None:
    actual = dev(peer(A, X, GA), peer(B, GB))
    desired = dev(peer(A, GA), peer(B, GB, Y))  # A loses X and nobody takes it
    request = diff(desired, actual)
    assert request is not None
    ops = request.peers
    assert ops[0] == SetPeer(B, update_only=True, allowed_ips=(Y,))
    assert ops[1] == SetPeer(A, update_only=True, replace_allowed_ips=True, allowed_ips=(GA,))


def test_endpoint_and_keepalive_changes_only() -> None:
    actual = dev(peer(A, X))
    desired = dev(peer(A, X, endpoint="10.250.0.6:51900", keepalive=25))
    request = diff(desired, actual)
    assert request == SetRequest(peers=(SetPeer(A, update_only=True, endpoint="10.250.0.6:51900", persistent_keepalive=25),))


def test_unknown_peers_are_removed_last_and_never_replace_peers() -> None:
    actual = dev(peer(A, X), peer(C, GB))
    desired = dev(peer(A, X), peer(B, GB))
    request = diff(desired, actual)
    assert request is not None
    assert request.peers[-1] == SetPeer(C, remove=True)
    assert b"replace_peers" not in __import__("meshctl.wireguard.uapi", fromlist=["x"]).encode_set(request)


def test_read_only_facts_do_not_cause_writes() -> None:
    actual = dev(replace(peer(A, X), last_handshake=123.0, rx_bytes=5, tx_bytes=6))
    assert diff(dev(peer(A, X)), actual) is None


def test_private_key_never_in_repr() -> None:
    assert PRIV not in repr(dev(peer(A, X)))
    assert PRIV not in repr(diff(dev(peer(A, X)), None))
    assert PRIV not in repr(KeyPair.from_private(PRIV))


# -- properties ---------------------------------------------------------------

PREFIXES = [ipaddress.ip_network(p) for p in ("0.0.0.0/0", "::/0", "10.0.0.0/8", "10.97.0.2/32", "10.97.0.3/32", "fd00::/8")]
KEYS = [A, B, C]


@st.composite
def devices(draw: st.DrawFn) -> Device:
    owners = draw(st.lists(st.sampled_from([None, *KEYS]), min_size=len(PREFIXES), max_size=len(PREFIXES)))
    present = draw(st.sets(st.sampled_from(KEYS), min_size=1))
    peers = []
    for key in KEYS:
        if key not in present:
            continue
        mine = frozenset(p for p, o in zip(PREFIXES, owners, strict=True) if o == key)
        peers.append(Peer(key, draw(st.sampled_from(["10.250.0.2:1", "10.250.0.6:1"])), mine, draw(st.sampled_from([0, 10]))))
    return Device("wgup", listen_port=1, private_key=PRIV, peers=tuple(peers))


def owners(device: Device) -> dict:
    return {p: peer.public_key for peer in device.peers for p in peer.allowed_ips}


@settings(max_examples=400, deadline=None)
@given(devices(), devices())
def test_diff_reaches_desired_and_never_orphans_a_kept_prefix(actual: Device, desired: Device) -> None:
    request = diff(desired, actual)
    if request is None:
        assert owners(actual) == owners(desired)
        return
    # Apply one peer operation at a time: WireGuard (and netlink) may expose
    # any intermediate state to packets.
    must_stay_owned = set(owners(actual)) & set(owners(desired))
    state = actual
    for op in request.peers:
        state = apply_to(state, SetRequest(peers=(op,)))
        assert must_stay_owned <= set(owners(state)), f"gap after {op}"
    final = apply_to(actual, request)
    assert owners(final) == owners(desired)
    assert {p.public_key: (p.endpoint, p.persistent_keepalive) for p in final.peers} == {
        p.public_key: (p.endpoint, p.persistent_keepalive) for p in desired.peers
    }
    assert diff(desired, final) is None  # idempotent
