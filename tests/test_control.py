"""Control datagrams: authenticated, bounded, replay-proof; bad input is counted, never raised past decode."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.uplink.control import MAC_LEN, ControlError, Message, ReplayGuard, Sequence, decode, encode

KEY = b"k" * 32
NOW = 1_700_000_000.0


def test_round_trip() -> None:
    m = Message("probe", "client", 7, NOW, 2)
    assert decode(encode(m, KEY), KEY, NOW + 1) == m


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(Message("probe", "c", 1, NOW), b"x" * 32), "bad-mac"),
        (b"short", "truncated"),
        (b"\x00" * 600, "oversized"),
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
        {"v": 2, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": 2},
        {"v": 1, "k": "launch", "s": "c", "n": 1, "t": NOW, "r": 2},
        {"v": 1, "k": "probe", "s": "", "n": 1, "t": NOW, "r": 2},
        {"v": 1, "k": "probe", "s": "c", "n": -1, "t": NOW, "r": 2},
        {"v": 1, "k": "probe", "s": "c", "n": True, "t": NOW, "r": 2},
        {"v": 1, "k": "probe", "s": "c", "n": 1, "t": "now", "r": 2},
        {"v": 1, "k": "probe", "s": "c", "n": 1, "t": NOW, "r": 5},
        {"v": 1, "k": "probe", "s": "c" * 100, "n": 1, "t": NOW, "r": 2},
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
    assert len(encode(Message("probe", "x" * 64, 2**63, NOW, 2), KEY)) < 512 - MAC_LEN
