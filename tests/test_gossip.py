"""Controller gossip without I/O: signing, refusing, relaying, expiring, merging."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey as Ed25519PrivateKey
from nacl.signing import VerifyKey as Ed25519PublicKey

from meshctl.gossip.table import (
    MAX_DATAGRAM,
    Description,
    GossipError,
    GossipTable,
    Link,
    NodeInfo,
    bundle,
    mesh_graph,
    next_description,
    next_refresh,
    sign,
    unbundle,
)

KEYS = {name: Ed25519PrivateKey.generate() for name in ("a", "b", "c", "mallory")}
TRUSTED = {name: k.verify_key for name, k in KEYS.items() if name != "mallory"}
WALL = 1_800_000_000.0


def describe(name: str, seq: int = 1, issued: float = WALL, lifetime: float = 60.0, **node: object) -> Description:
    info = NodeInfo(name=str(node.pop("as_name", name)), router_id=f"rid-{name}",
                    links=(Link(f"rid-{'b' if name == 'a' else 'a'}", 96, "wg0"),), prefixes=("10.99.0.1/32",))
    return Description(name, seq, issued, lifetime, info)


def table(me: str = "c") -> GossipTable:
    return GossipTable(me, TRUSTED)


def test_a_new_description_is_kept_and_relayed_unchanged() -> None:
    t = table()
    data = sign(describe("a"), KEYS["a"])
    assert t.receive(data, 0.0, WALL) == data
    (d,) = t.descriptions()
    assert d.origin == "a" and d.node.links == (Link("rid-b", 96, "wg0"),) and d.node.prefixes == ("10.99.0.1/32",)
    assert t.accepted == 1 and not t.rejected


def test_newer_replaces_older_and_older_is_a_replay() -> None:
    t = table()
    old, new = sign(describe("a", seq=1), KEYS["a"]), sign(describe("a", seq=2), KEYS["a"])
    assert t.receive(old, 0.0, WALL) is not None
    assert t.receive(new, 1.0, WALL) is not None
    assert t.receive(new, 2.0, WALL) is None and t.rejected["duplicate"] == 1
    assert t.receive(old, 3.0, WALL) is None and t.rejected["replay"] == 1
    assert t.descriptions()[0].seq == 2


def test_bad_datagrams_are_counted_and_change_nothing() -> None:
    t = table()
    t.receive(sign(describe("a"), KEYS["a"]), 0.0, WALL)
    before = {o: (e.description, e.expires) for o, e in t.entries.items()}
    good = sign(describe("b", seq=5), KEYS["b"])
    body, signature = msgpack.unpackb(good)
    tampered = bytearray(body)
    tampered[-3] ^= 0x01
    cases = {
        "bad-signature": sign(describe("b", seq=9), KEYS["mallory"]),  # mallory speaks for b
        "unknown-signer": sign(describe("mallory"), KEYS["mallory"]),
        "malformed": good[:-10],  # truncated
        "oversized": good + b"\0" * MAX_DATAGRAM,
        "stale": sign(describe("b", seq=6, issued=WALL - 120, lifetime=60), KEYS["b"]),
    }
    for reason, data in cases.items():
        assert t.receive(data, 1.0, WALL) is None, reason
        assert t.rejected[reason] >= 1, (reason, t.rejected)
    assert t.receive(msgpack.packb([bytes(tampered), signature]), 1.0, WALL) is None
    assert t.receive(b"\xc1garbage", 1.0, WALL) is None
    assert t.receive(msgpack.packb([body, signature[:10]]), 1.0, WALL) is None
    assert t.receive(sign(describe("b", seq=7, issued=WALL + 600), KEYS["b"]), 1.0, WALL) is None  # from the future
    assert t.receive(sign(describe("b", seq=8, as_name="a"), KEYS["b"]), 1.0, WALL) is None  # b describing a
    assert {o: (e.description, e.expires) for o, e in t.entries.items()} == before
    assert t.accepted == 1


def test_our_own_description_coming_back_is_ignored() -> None:
    t = table("a")
    assert t.receive(sign(describe("a"), KEYS["a"]), 0.0, WALL) is None
    assert t.rejected["own"] == 1 and not t.entries


def test_expiry_and_no_replay_after_it() -> None:
    t = table()
    data = sign(describe("a", lifetime=30), KEYS["a"])
    t.receive(data, 100.0, WALL)
    assert t.expire(129.0) == []
    assert t.expire(130.5) == ["a"] and not t.entries
    assert t.receive(data, 131.0, WALL + 10) is None  # the same datagram again: still refused
    assert t.rejected["duplicate"] == 1


def test_lifetime_counts_from_the_origin_clock_too() -> None:
    """A description issued 50 s ago with a 60 s lifetime has 10 s left, whatever our clock says."""
    t = table()
    t.receive(sign(describe("a", issued=WALL - 50, lifetime=60), KEYS["a"]), 0.0, WALL)
    assert t.entries["a"].expires == 10.0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_input_makes_receive_raise(data: bytes) -> None:
    t = table()
    assert t.receive(data, 0.0, WALL) is None
    assert not t.entries


def test_flooding_reaches_every_node_of_a_grid() -> None:
    """Pure simulation of the flood on a 4x4 grid: each node relays what is new to its neighbours."""
    names = [f"r{i}{j}" for i in range(4) for j in range(4)]
    keys = {n: Ed25519PrivateKey.generate() for n in names}
    trusted = {n: k.verify_key for n, k in keys.items()}
    tables = {n: GossipTable(n, trusted) for n in names}

    def neighbours(n: str) -> list[str]:
        i, j = int(n[1]), int(n[2])
        return [f"r{a}{b}" for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < 4 and 0 <= b < 4]

    queue = []
    for n in names:
        links = tuple(Link(f"rid-{m}", 96, f"wg-{m}") for m in neighbours(n))
        data = sign(Description(n, 1, WALL, 60.0, NodeInfo(n, f"rid-{n}", links)), keys[n])
        queue += [(m, n, data) for m in neighbours(n)]
    sent = len(queue)
    while queue:
        to, came_from, data = queue.pop(0)
        if tables[to].receive(data, 0.0, WALL) is not None:
            fresh = [(m, to, data) for m in neighbours(to) if m != came_from]
            sent += len(fresh)
            queue += fresh
    for n, t in tables.items():
        assert len(t.entries) == 15, n  # everyone but itself
    graph = mesh_graph([d.node for d in tables["r00"].descriptions()])
    assert graph.number_of_nodes() == 16  # r00 itself appears through its neighbours' links
    assert graph.number_of_edges() == 2 * 24 - 2  # 24 grid links, both directions, minus r00's own two reports
    assert sent < 16 * 16 * 4  # each description crosses each link at most twice


def test_mesh_graph_keeps_unreported_neighbours() -> None:
    g = mesh_graph([NodeInfo("a", "rid-a", (Link("rid-x", 96, "wg0"),))])
    assert g.nodes["rid-x"]["reported"] is False and g["rid-a"]["rid-x"]["wg0"]["cost"] == 96


def test_shape_changes_go_at_once_refreshes_on_slots_and_costs_with_the_next_wave() -> None:
    sent = NodeInfo("a", "r-a", links=(Link("r-b", 96, "wg-b"),), prefixes=("10.0.0.1/32",))
    at = 300.0  # a refresh slot (lifetime 30 s: slots every 10 s, waves every 5 s)
    assert next_description(sent, None, at, 30.0) == float("-inf")  # never described yet
    assert next_description(sent, sent, at, 30.0) == 310.0  # refresh on the next slot
    cost_moved = NodeInfo("a", "r-a", links=(Link("r-b", 101, "wg-b"),), prefixes=("10.0.0.1/32",))
    assert next_description(cost_moved, sent, at, 30.0) == 305.0  # the next wave
    assert next_description(cost_moved, sent, at + 3, 30.0) == 310.0  # at least 2.5 s after the last
    for changed in (
        NodeInfo("a", "r-a", links=(Link("r-b", 96, "wg-b"), Link("r-c", 96, "wg-c")), prefixes=("10.0.0.1/32",)),
        NodeInfo("a", "r-a", links=(Link("r-b", 96, "wg-b"),)),  # a prefix went
        NodeInfo("a", "r-a", links=(Link("r-b", 96, "wg-b"),), prefixes=("10.0.0.1/32",), roles=("gateway",)),
    ):
        assert next_description(changed, sent, at + 0.1, 30.0) == float("-inf")


class CountingKey:
    """A trusted key that counts signature checks (and delegates them)."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self.key = key
        self.checks = 0

    def verify(self, data: bytes, signature: bytes) -> None:
        self.checks += 1
        self.key.verify(data, signature)


def test_copies_and_replays_are_refused_before_the_signature_check() -> None:
    counting = CountingKey(TRUSTED["a"])
    t = GossipTable("c", {**TRUSTED, "a": counting})  # type: ignore[dict-item]
    first = sign(describe("a", seq=5), KEYS["a"])
    assert t.receive(first, 0.0, WALL) is not None and counting.checks == 1
    for _ in range(3):
        assert t.receive(first, 1.0, WALL) is None
    assert t.receive(sign(describe("a", seq=4), KEYS["a"]), 1.0, WALL) is None
    assert counting.checks == 1 and t.rejected == {"duplicate": 3, "replay": 1}
    own = GossipTable("a", {"a": counting})  # type: ignore[dict-item]
    assert own.receive(first, 0.0, WALL) is None and counting.checks == 1 and own.rejected == {"own": 1}


def test_a_forged_higher_seq_moves_nothing_so_the_real_one_still_gets_in() -> None:
    """The early seq look only refuses: a forgery claiming seq 10**18 fails its signature, and seq 6 is accepted."""
    t = table()
    t.receive(sign(describe("a", seq=5), KEYS["a"]), 0.0, WALL)
    forged = sign(describe("a", seq=10**18), KEYS["mallory"])
    assert t.receive(forged, 1.0, WALL) is None and t.rejected["bad-signature"] == 1
    assert t.last_seq["a"][0] == 5
    assert t.receive(sign(describe("a", seq=6), KEYS["a"]), 2.0, WALL) is not None
    assert t.descriptions()[0].seq == 6


# Any msgpack value the body could hold, within the decoder's limits.
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = ("v", "g", "s", "t", "x", "n", "r", "l", "p", "k", "e", "o")
_links = st.lists(st.tuples(st.text(max_size=8), st.integers(-2, 70000), st.text(max_size=8)).map(list), max_size=4)


@settings(max_examples=400, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=12),
    links=st.none() | _links,
    prefixes=st.none() | st.lists(st.sampled_from(["10.0.0.0/24", "fd00::/64", "10.0.0.1/24", "x", ""]), max_size=3),
    signer=st.sampled_from(["a", "mallory"]),
)
def test_signed_bodies_of_any_shape_decode_or_raise_gossip_error(
    fields: dict, links: list | None, prefixes: list | None, signer: str
) -> None:
    """Signed, so past the signature: whatever the body holds, only GossipError escapes, and what is accepted is sane."""
    body_obj = {"v": 1, "g": "a", "s": 1, "t": WALL, "x": 60.0, "n": "a", "r": "rid-a", **fields}
    if links is not None:
        body_obj["l"] = links
    if prefixes is not None:
        body_obj["p"] = prefixes
    try:
        body = msgpack.packb(body_obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return  # not representable in msgpack: cannot arrive
    data = msgpack.packb([body, KEYS[signer].sign(body).signature], use_bin_type=True)
    t = table()
    try:
        relay = t.receive(data, 0.0, WALL)
    except Exception as exc:  # pragma: no cover - the property under test
        raise AssertionError(f"receive raised {type(exc).__name__}: {exc}") from exc
    if relay is None:
        assert not t.entries and sum(t.rejected.values()) == 1
        return
    assert signer == "a"
    (d,) = t.descriptions()
    assert d.origin == d.node.name == "a" and isinstance(d.seq, int) and d.seq >= 0
    assert 0 < d.lifetime <= 3600 and all(0 <= lk.cost <= 0xFFFF for lk in d.node.links)


def test_a_refresh_is_told_from_a_change_and_copies_name_their_senders() -> None:
    t = table()
    first = t.take(sign(describe("a", seq=1), KEYS["a"]), 0.0, WALL, "n1")
    assert first is not None and first.changed  # a new origin is news
    refresh = t.take(sign(describe("a", seq=2), KEYS["a"]), 1.0, WALL, "n1")
    assert refresh is not None and not refresh.changed  # the same description, only a newer seq
    assert t.take(sign(describe("a", seq=2), KEYS["a"]), 1.1, WALL, "n2") is None  # a copy ...
    assert t.entries["a"].holders == {"n1", "n2"}  # ... whose sender needs none from us
    moved = Description("a", 3, WALL, 60.0, NodeInfo("a", "rid-a", (), ("10.99.0.9/32",)))
    change = t.take(sign(moved, KEYS["a"]), 2.0, WALL, "n2")
    assert change is not None and change.changed and t.entries["a"].holders == {"n2"}
    assert t.take(sign(describe("a", seq=2), KEYS["a"]), 2.1, WALL, "n3") is None  # an older copy: no holder
    assert t.entries["a"].holders == {"n2"}
    cost = Description("a", 4, WALL, 60.0, NodeInfo("a", "rid-a", (), ("10.99.0.9/32",)))
    assert t.take(sign(cost, KEYS["a"]), 3.0, WALL) is not None  # same shape as seq 3 ...
    costlier = Description("a", 5, WALL, 60.0, NodeInfo("a", "rid-a", (Link("rid-b", 96, "wg0"),), ("10.99.0.9/32",)))
    assert t.take(sign(costlier, KEYS["a"]), 3.0, WALL).changed  # ... but a link that came is a change
    moved = Description("a", 6, WALL, 60.0, NodeInfo("a", "rid-a", (Link("rid-b", 400, "wg0"),), ("10.99.0.9/32",)))
    assert not t.take(sign(moved, KEYS["a"]), 3.0, WALL).changed  # and a cost that moved rides the wave


@settings(max_examples=300)
@given(st.floats(0, 1e9), st.floats(3, 3600))
def test_refreshes_fall_on_slots_shared_by_the_mesh(sent: float, lifetime: float) -> None:
    period = lifetime / 3
    slot = next_refresh(sent, lifetime)
    assert abs(slot / period - round(slot / period)) < 1e-6  # on the mesh-wide grid of slots
    assert period / 2 - 1e-6 <= slot - sent <= 1.5 * period + 1e-6  # never crowded, never more than lifetime / 2


def test_a_refresh_on_its_slot_is_due_again_one_period_later() -> None:
    assert next_refresh(300.0, 60.0) == 320.0
    assert next_refresh(309.0, 60.0) == 320.0  # sent 11 s before the slot: still due on it
    assert next_refresh(311.0, 60.0) == 340.0  # a change 9 s before the slot: the refresh waits one more


@settings(max_examples=200)
@given(st.lists(st.integers(0, 3000), max_size=60))
def test_bundles_carry_datagrams_unchanged_and_within_the_limit(sizes: list[int]) -> None:
    datagrams = [msgpack.packb([b"x" * n, b"s" * 64], use_bin_type=True) for n in sizes]
    bundles = bundle(datagrams)
    assert [d for b in bundles for d in unbundle(b)] == datagrams
    assert all(len(b) <= MAX_DATAGRAM for b in bundles)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=30), st.integers(0, 40))
def test_the_kept_packer_writes_the_bytes_packb_wrote(sizes: list[int], links: int) -> None:
    """Datagrams and bundles are packed with one Packer kept for every call: the bytes a fresh msgpack.packb
    made (what was packed comes back from unpackb unchanged, so packb of it must give the same bytes)."""
    info = NodeInfo("a", "rid-a", tuple(Link(f"rid-{i}", 96 + i, f"wg{i}") for i in range(links)),
                    prefixes=("10.99.0.1/32", "2001:db8::/64"), roles=("gateway",))
    data = sign(Description("a", 7, WALL + 0.25, 60.0, info, bundles=True), KEYS["a"])
    body, signature = msgpack.unpackb(data)
    assert data == msgpack.packb([body, signature], use_bin_type=True)
    assert body == msgpack.packb(msgpack.unpackb(body), use_bin_type=True)
    for b in bundle([msgpack.packb([b"x" * n, b"s" * 64], use_bin_type=True) for n in sizes] + [data]):
        assert b == msgpack.packb(msgpack.unpackb(b), use_bin_type=True)


def test_a_plain_datagram_is_its_own_bundle_and_a_bad_bundle_is_refused() -> None:
    data = sign(describe("a"), KEYS["a"])
    assert unbundle(data) == [data]
    for bad in (msgpack.packb(["B", 1, 2]), msgpack.packb(["B", b"x" * (MAX_DATAGRAM + 1)])):
        try:
            unbundle(bad)
        except GossipError as exc:
            assert exc.reason == "malformed"
        else:
            raise AssertionError(f"{bad[:10]!r} taken")


def test_whether_the_origin_takes_bundles_travels_signed() -> None:
    t = table()
    t.receive(sign(Description("a", 1, WALL, 60.0, describe("a").node, bundles=True), KEYS["a"]), 0.0, WALL)
    t.receive(sign(describe("b"), KEYS["b"]), 0.0, WALL)
    assert t.entries["a"].description.bundles and not t.entries["b"].description.bundles
