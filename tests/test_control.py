"""Control datagrams: authenticated, bounded, replay-proof; bad input is counted, never raised past decode."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.uplink.control import MAC_LEN, MAX_DATAGRAM, ControlError, Message, ReplayGuard, Sequence, decode, encode

KEY = b"k" * 32
NOW = 1_700_000_000.0


def test_round_trip() -> None:
    m = Message("probe", "client", 7, NOW, (2, 0), ("10.200.0.0/24", "2001:db8::/64"))
    assert decode(encode(m, KEY), KEY, NOW + 1) == m
    a = Message("ack", "gw1", 7, NOW, (2, 1), (), (96, 65535))
    assert decode(encode(a, KEY), KEY, NOW + 1) == a
    assert a.role(4) == 2 and a.role(6) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(Message("probe", "c", 1, NOW), b"x" * 32), "bad-mac"),
        (b"short", "truncated"),
        (b"\x00" * 1100, "oversized"),
        (encode(Message("probe", "c", 1, NOW - 100), KEY), "stale"),
    ],
)
def test_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(ControlError) as info:
        decode(data, KEY, NOW)
    assert info.value.reason == reason


def signed(obj: object) -> bytes:
    import hashlib
    import hmac

    body = msgpack.packb(obj)
    return body + hmac.new(KEY, body, hashlib.sha256).digest()


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2],
        {"v": 1, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": [2, 0]},
        {"v": 2, "k": "launch", "s": "c", "n": 1, "t": NOW, "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "", "n": 1, "t": NOW, "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": -1, "t": NOW, "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": True, "t": NOW, "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": "now", "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": float("nan"), "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": float("inf"), "r": [2, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": 2},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": [5, 0]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": [2]},
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": [2, 0], "p": [1]},
        {"v": 2, "k": "ack", "s": "c", "n": 1, "t": NOW, "r": [2, 0], "m": [70000]},
        {"v": 2, "k": "ack", "s": "c", "n": 1, "t": NOW, "r": [2, 0], "m": [True]},
        {"v": 2, "k": "probe", "s": "c" * 100, "n": 1, "t": NOW, "r": [2, 0]},
    ],
)
def test_signed_but_malformed(obj: object) -> None:
    with pytest.raises(ControlError, match="malformed"):
        decode(signed(obj), KEY, NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    with pytest.raises(ControlError):
        decode(data, KEY, NOW)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=100))
def test_signed_garbage_never_raises_anything_else(body: bytes) -> None:
    import hashlib
    import hmac

    with contextlib.suppress(ControlError):
        decode(body + hmac.new(KEY, body, hashlib.sha256).digest(), KEY, NOW)


def test_replay_guard() -> None:
    g = ReplayGuard(max_senders=2)
    assert g.accept("a", 5) and not g.accept("a", 5) and not g.accept("a", 4) and g.accept("a", 6)
    assert g.accept("b", 1)
    assert not g.accept("c", 1)  # bounded: a flood of new names cannot grow memory


def test_sequence_grows_across_restarts() -> None:
    first = Sequence(1000)
    a = [first.next() for _ in range(3)]
    second = Sequence(2000)  # restarted later: the clock moved on
    assert second.next() > a[-1]
    prefixes = tuple(f"2001:db8:{i:x}::/64" for i in range(16))
    assert len(encode(Message("probe", "x" * 64, 2**63, NOW, (2, 2), prefixes), KEY)) < MAX_DATAGRAM - MAC_LEN


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=8),
                    max_leaves=30))
def test_any_signed_msgpack_value_is_refused_or_parsed(obj: object) -> None:
    """Whatever a holder of the secret signs, decode returns a Message or raises ControlError: nothing else."""
    try:
        data = signed(obj)
    except (OverflowError, ValueError, TypeError):
        return  # not packable
    with contextlib.suppress(ControlError):
        m = decode(data, KEY, NOW)
        assert isinstance(m, Message) and len(m.roles) == 2


@given(secrets=st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=8), body=st.binary(max_size=300))
def test_the_keyed_mac_is_hmac_sha256_for_any_secret_and_body(secrets: list[bytes], body: bytes) -> None:
    import hmac

    from meshctl.uplink import control

    for secret in secrets * 2:  # kept states are reused, and the kept set stays small
        assert control.mac(secret, body) == hmac.digest(secret, body, "sha256")
        assert len(control._KEYED) <= 4


_messages = st.builds(
    Message,
    kind=st.sampled_from(["probe", "ack"]),
    sender=st.text(max_size=70),
    seq=st.integers(0, 2**64 - 1),
    ts=st.floats(allow_nan=False) | st.integers(0, 2**40).map(float),
    roles=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    prefixes=st.lists(st.text(max_size=200), max_size=16).map(tuple),  # up to ~3 kB: past the kept buffer
    metrics=st.lists(st.integers(0, 0xFFFF), max_size=16).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages, min_size=1, max_size=6), st.integers(0, 5))
def test_the_kept_packer_writes_the_bytes_packb_wrote(messages: list[Message], fail_at: int) -> None:
    """encode packs with one Packer kept for every call: each body is what a fresh msgpack.packb made,
    after a body bigger than its buffer and after a pack that failed half-way too."""
    from meshctl.uplink import control

    for i, m in enumerate(messages):
        if i == fail_at:
            with pytest.raises(TypeError):
                control._pack({"v": 2, "k": "probe", "x": object()})
        wire: dict[str, object] = {"v": 2, "k": m.kind, "s": m.sender, "n": m.seq, "t": m.ts, "r": list(m.roles)}
        if m.prefixes:
            wire["p"] = list(m.prefixes)
        if m.metrics:
            wire["m"] = list(m.metrics)
        assert encode(m, KEY)[:-MAC_LEN] == msgpack.packb(wire, use_bin_type=True)
