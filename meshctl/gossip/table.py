"""Controller gossip, without I/O: signed node descriptions flooded like link-state.

Babel is distance-vector, so one babeld never sees the whole mesh.  Each
meshctl describes its own node (name, router id, WireGuard keys and
endpoints, neighbours with costs, announced prefixes, roles), signs it with
its Ed25519 key and sends it to its neighbours, which relay what is new to
theirs, as OSPF or OLSR flood link-state: every node ends up holding every
node's latest description, and can draw the mesh.

Wire format: ``msgpack([body, signature])`` where ``body`` is the msgpack of
a version-1 map and ``signature`` is Ed25519 over ``body``.  The signer must
be in the configured set of trusted keys, under the name the body claims, so
a node can only speak for itself.  Replays are refused by a per-origin
sequence number that only goes up (wall clock in nanoseconds at the origin,
so a restart continues above its old numbers), remembered for a while after
the entry itself has expired.  Each description carries its lifetime; the
origin refreshes it well before, and a node that stops refreshing drops out
of everyone's view when it runs out.

The asyncio layer feeds datagrams in with the clock and sends out what comes
back; this module never touches a socket or reads a clock.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import msgpack
import networkx as nx

from meshctl.errors import Refused
from meshctl.records import record

if TYPE_CHECKING:  # PyNaCl is loaded with the keys, by a node whose config has [gossip]
    from nacl.signing import SigningKey as Ed25519PrivateKey
    from nacl.signing import VerifyKey as Ed25519PublicKey

    from meshctl.topology.model import TopologyModel

VERSION = 1
MAX_DATAGRAM = 8192  # one description; a node with ~100 neighbours fits
SIGNATURE_LEN = 64
MAX_LIFETIME = 3600.0  # seconds; longer claims are refused
MAX_FUTURE = 60.0  # a description stamped further ahead of our clock is refused
MAX_ORIGINS = 4096  # bounded state, whatever arrives
REMEMBER_SEQ = 2 * MAX_LIFETIME  # how long a retired origin's last seq guards against replays


class GossipError(Refused):
    """A gossip datagram was refused; ``reason`` is a short counter label."""


#: Every reason :class:`GossipTable` counts a datagram under (metrics start each at 0).
REJECT_REASONS = ("malformed", "oversized", "unknown-signer", "bad-signature", "stale", "own", "duplicate", "replay",
                  "full", "underlay")  # underlay: counted by the runner, for a datagram not from a Babel interface


@record
class Link:
    """One Babel neighbour as its node sees it."""

    router_id: str
    cost: int
    interface: str = ""


@record
class UplinkChoice:
    """One gateway a client's uplink may use, and what the client makes of it now.

    This is the uplink plane on the mesh map: which client uses which gateway,
    and which backups are warm.  ``address`` is the client's own address inside
    the uplink (the one the chosen gateway announces into Babel for it).
    """

    gateway: str  # the gateway's name in the client's config
    router_id: str  # its Babel router id, "" while not known
    state: str  # one word: warm, cold, down, unreachable, ... (CandidateView.state; new words may come)
    chosen: bool
    address: str = ""


@record
class NodeInfo:
    """What a node says about itself."""

    name: str
    router_id: str
    links: tuple[Link, ...] = ()
    prefixes: tuple[str, ...] = ()
    wg_keys: tuple[str, ...] = ()  # WireGuard public keys
    endpoints: tuple[str, ...] = ()  # ADDRESS:PORT where its tunnels listen
    roles: tuple[str, ...] = ()
    uplinks: tuple[UplinkChoice, ...] = ()  # a client's gateways; optional on the wire ("u")


@record
class Description:
    """One signed, sequenced description with its lifetime."""

    origin: str
    seq: int
    issued: float  # origin's wall clock, seconds
    lifetime: float
    node: NodeInfo
    bundles: bool = False  # the origin takes bundles (:func:`bundle`); optional on the wire ("b")


def _str_list(value: object, what: str, limit: int = 256) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) for v in value):
        raise GossipError("malformed", f"{what} must be a list of strings")
    return tuple(value)


def _node(obj: dict) -> NodeInfo:
    links = obj.get("l", [])
    if not isinstance(links, list) or len(links) > 512:
        raise GossipError("malformed", "links must be a list")
    parsed = []
    for link in links:
        if (
            not isinstance(link, list)
            or len(link) != 3
            or not isinstance(link[0], str)
            or not isinstance(link[1], int)
            or isinstance(link[1], bool)
            or not 0 <= link[1] <= 0xFFFF
            or not isinstance(link[2], str)
        ):
            raise GossipError("malformed", "a link must be [router_id, cost 0..65535, interface]")
        parsed.append(Link(link[0], link[1], link[2]))
    name, router_id = obj.get("n"), obj.get("r")
    if not isinstance(name, str) or not name or not isinstance(router_id, str):
        raise GossipError("malformed", "bad name or router id")
    prefixes = _str_list(obj.get("p", []), "prefixes")
    for p in prefixes:
        if not _is_prefix(p):
            raise GossipError("malformed", f"not a prefix: {p[:50]!r}")
    return NodeInfo(name, router_id, tuple(parsed), prefixes, _str_list(obj.get("k", []), "keys"),
                    _str_list(obj.get("e", []), "endpoints"), _str_list(obj.get("o", []), "roles"),
                    _uplinks(obj.get("u", [])))


@functools.lru_cache(maxsize=1024)
def _is_prefix(text: str) -> bool:
    """Whether ``text`` is a prefix ipaddress takes.  Remembered: every refresh repeats the same few, and
    ipaddress took a third of reading a description (bounded, so junk cannot grow it)."""
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def _uplinks(value: object) -> tuple[UplinkChoice, ...]:
    if not isinstance(value, list) or len(value) > 64:
        raise GossipError("malformed", "uplinks must be a list")
    out = []
    for u in value:
        if (
            not isinstance(u, list)
            or len(u) != 5
            or not all(isinstance(u[i], str) for i in (0, 1, 2, 4))
            or not isinstance(u[3], bool)
            or not 0 < len(u[2]) <= 32
        ):
            raise GossipError("malformed", "an uplink must be [gateway, router_id, state, chosen, address]")
        out.append(UplinkChoice(u[0], u[1], u[2], u[3], u[4]))
    return tuple(out)


#: One Packer for every datagram, rather than packb's new one (and new 256 KiB buffer) per call:
#: see meshctl.uplink.control.  Only the event loop's thread packs.
_pack = msgpack.Packer(use_bin_type=True, buf_size=MAX_DATAGRAM).pack


def sign(description: Description, key: Ed25519PrivateKey) -> bytes:
    """The datagram for ``description``, signed with the origin's key."""
    n = description.node
    body = _pack(
        {
            "v": VERSION,
            "g": description.origin,
            "s": description.seq,
            "t": description.issued,
            "x": description.lifetime,
            "n": n.name,
            "r": n.router_id,
            "l": [[lk.router_id, lk.cost, lk.interface] for lk in n.links],
            "p": list(n.prefixes),
            "k": list(n.wg_keys),
            "e": list(n.endpoints),
            "o": list(n.roles),
        } | ({"u": [[u.gateway, u.router_id, u.state, u.chosen, u.address] for u in n.uplinks]} if n.uplinks else {})
        | ({"b": True} if description.bundles else {})
    )
    return _pack([body, key.sign(body).signature])


@record
class Header:
    """A datagram's origin and sequence number, read before anything is verified.

    Only good for refusing: nothing in it may be believed, or kept, until
    :func:`finish` has checked the signature.
    """

    origin: str
    seq: int
    key: Ed25519PublicKey  # the trusted key of the origin it claims
    body: bytes
    signature: bytes
    obj: dict


def _unpack(data: bytes, **limits: int | bool) -> object:
    """msgpack within ``limits``; :class:`GossipError` ("malformed") for anything it cannot take."""
    try:
        return msgpack.unpackb(data, raw=False, **limits)
    except Exception as exc:  # msgpack raises several types; all mean the same here
        raise GossipError("malformed", type(exc).__name__) from None


def read_header(data: bytes, trusted: dict[str, Ed25519PublicKey]) -> Header:
    """Unpack a datagram as far as its claimed origin and seq; :class:`GossipError` if it is not even that."""
    if len(data) > MAX_DATAGRAM:
        raise GossipError("oversized", f"{len(data)} bytes")
    outer = _unpack(data, max_bin_len=MAX_DATAGRAM, max_array_len=2, max_map_len=0, max_str_len=0)
    if not isinstance(outer, list) or len(outer) != 2 or not all(isinstance(x, bytes) for x in outer):
        raise GossipError("malformed", "not [body, signature]")
    body, signature = outer
    if len(signature) != SIGNATURE_LEN:
        raise GossipError("malformed", "signature length")
    obj = _unpack(body, strict_map_key=True, max_str_len=512, max_map_len=16, max_array_len=512, max_bin_len=0)
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise GossipError("malformed", "not a version-1 map")
    origin = obj.get("g")
    key = trusted.get(origin) if isinstance(origin, str) else None
    if key is None:
        raise GossipError("unknown-signer", str(origin)[:50])
    assert isinstance(origin, str)
    seq = obj.get("s")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise GossipError("malformed", "bad seq")
    return Header(origin, seq, key, body, signature, obj)


def finish(header: Header, wall: float) -> Description:
    """Check the rest of the datagram, the signature last (the dearest check, ~40 us)."""
    obj, origin = header.obj, header.origin
    issued, lifetime = obj.get("t"), obj.get("x")
    if not isinstance(issued, int | float) or isinstance(issued, bool):
        raise GossipError("malformed", "bad time")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or not 0 < lifetime <= MAX_LIFETIME:
        raise GossipError("malformed", "bad lifetime")
    if issued - wall > MAX_FUTURE:
        raise GossipError("stale", f"issued {issued - wall:+.0f} s in the future")
    if issued + lifetime < wall:
        raise GossipError("stale", "expired")
    node = _node(obj)
    if node.name != origin:
        raise GossipError("malformed", "a node may only describe itself")
    from nacl.exceptions import BadSignatureError  # loaded with the key, so free by now

    try:
        header.key.verify(header.body, header.signature)
    except BadSignatureError:
        raise GossipError("bad-signature", origin) from None
    return Description(origin, header.seq, float(issued), float(lifetime), node, obj.get("b") is True)


MAX_BUNDLE = 65507  # what one UDP datagram can carry
_BUNDLE_TAG = "B"


def bundle(datagrams: Iterable[bytes], limit: int = MAX_DATAGRAM) -> list[bytes]:
    """Pack signed datagrams into as few bundles of at most ``limit`` bytes as they fit in.

    A bundle is ``msgpack(["B", datagram, ...])``: the datagrams unchanged, so
    each keeps its signature, and a relay of a whole wave is one send (each
    send into a tunnel wakes its WireGuard process, and each datagram its
    receiver).  A datagram too big to share travels alone, unbundled.
    Only for neighbours whose description says they take bundles: older
    nodes count a bundle as malformed.
    """
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for d in datagrams:
        if len(d) + 8 > limit - 8:
            out.append(d)
            continue
        if batch and size + len(d) + 5 > limit:
            out.append(_pack([_BUNDLE_TAG, *batch]))
            batch, size = [], 0
        batch.append(d)
        size += len(d) + 5 + (8 if len(batch) == 1 else 0)  # bin header per item; array header and tag once
    if len(batch) == 1:
        out.append(batch[0])
    elif batch:
        out.append(_pack([_BUNDLE_TAG, *batch]))
    return out


def unbundle(data: bytes) -> list[bytes]:
    """The datagrams in ``data``: itself if it is a plain one; :class:`GossipError` for a bad bundle.

    A plain datagram is an array of two bins; a bundle's second byte (after a
    fixarray header) or fourth (after array16) starts the string "B".
    """
    if not (data[1:3] == b"\xa1B" and data[:1] >= b"\x92" and data[:1] <= b"\x9f"
            or data[:1] == b"\xdc" and data[3:5] == b"\xa1B"):
        return [data]
    if len(data) > MAX_BUNDLE:
        raise GossipError("oversized", f"bundle of {len(data)} bytes")
    items = _unpack(data, max_bin_len=MAX_DATAGRAM, max_str_len=1, max_array_len=4096, max_map_len=0)
    if (not isinstance(items, list) or len(items) < 2 or items[0] != _BUNDLE_TAG
            or not all(isinstance(x, bytes) for x in items[1:])):
        raise GossipError("malformed", "not a bundle")
    return items[1:]


def verify(data: bytes, trusted: dict[str, Ed25519PublicKey], wall: float) -> Description:
    """Check and parse one datagram; :class:`GossipError` for anything wrong, nothing else."""
    return finish(read_header(data, trusted), wall)


@dataclass
class Entry:
    """What we hold for one origin."""

    description: Description
    datagram: bytes  # as received: relayed unchanged, so the signature still holds
    expires: float  # our monotonic clock
    holders: set[Hashable] = field(default_factory=set)  # neighbours that sent us this seq: they need no copy


@record
class Accepted:
    """A datagram that was news: what to relay, and how soon.

    ``changed`` is False for a refresh, the origin saying again what we
    already held (only its seq and timestamp moved, or a link cost, which its
    origin itself sends only with a wave): it may wait a moment to travel with
    the rest of its wave.  Anything else (a new origin, a link, prefix, key,
    role or uplink that came or went) is a change, relayed at once.
    """

    datagram: bytes
    origin: str
    changed: bool


@dataclass
class GossipTable:
    """Every origin's latest description; decides what to keep and what to relay.

    ``now`` is a monotonic clock (expiry), ``wall`` the wall clock (the
    origin's timestamps).  Lifetimes are counted from when we accept a
    description, capped by what the origin's timestamp leaves, so clock skew
    between nodes cannot keep a dead node alive.
    """

    me: str
    trusted: dict[str, Ed25519PublicKey]
    entries: dict[str, Entry] = field(default_factory=dict)
    last_seq: dict[str, tuple[int, float]] = field(default_factory=dict)  # origin -> (seq, forget at)
    rejected: Counter[str] = field(default_factory=Counter)
    accepted: int = 0

    def receive(self, data: bytes, now: float, wall: float) -> bytes | None:
        """Take one datagram; return it for relaying if it was new, else None (and count why)."""
        taken = self.take(data, now, wall)
        return taken.datagram if taken is not None else None

    def take(self, data: bytes, now: float, wall: float, source: Hashable = None) -> Accepted | None:
        """Take one datagram from neighbour ``source``; :class:`Accepted` if it was new, else None (and count why).

        ``source`` is remembered as a holder of what it sent, a copy included:
        a relay need not go back to a neighbour that already has it.

        Whether a description is news is decided from its claimed origin and
        seq before its signature is checked: 55-59 % of what a grid node
        receives are copies of what it holds, or its own, and an Ed25519
        check costs ~40 us.  That opens no replay hole, because this early
        look can only refuse: ``last_seq`` moves only after the signature of
        the datagram that carries the higher seq has been verified.  A forger
        who claims an old seq is refused, as a copy, which is what it is; one
        who claims a new seq meets the signature check like everyone else.
        """
        try:
            header = read_header(data, self.trusted)
            if header.origin == self.me:
                raise GossipError("own")  # our own description coming back round: nothing new
            known = self.last_seq.get(header.origin)
            if known is not None and header.seq <= known[0]:
                if header.seq == known[0]:
                    held = self.entries.get(header.origin)
                    if held is not None and source is not None and held.description.seq == header.seq:
                        held.holders.add(source)  # unverified, but it can only spare that neighbour a copy
                    raise GossipError("duplicate")
                raise GossipError("replay")
            if known is None and len(self.last_seq) >= MAX_ORIGINS:
                raise GossipError("full")
            d = finish(header, wall)
        except GossipError as exc:
            self.rejected[exc.reason] += 1
            return None
        remaining = min(d.lifetime, d.issued + d.lifetime - wall)
        before = self.entries.get(d.origin)
        self.entries[d.origin] = Entry(d, data, now + remaining, {source} if source is not None else set())
        self.last_seq[d.origin] = (d.seq, now + REMEMBER_SEQ)
        self.accepted += 1
        was = before.description.node if before is not None else None
        return Accepted(data, d.origin, was is None or (was != d.node and _shape(was) != _shape(d.node)))

    def expire(self, now: float) -> list[str]:
        """Drop descriptions past their lifetime; return their origins."""
        gone = [o for o, e in self.entries.items() if e.expires <= now]
        for origin in gone:
            del self.entries[origin]
        for origin in [o for o, (_, forget) in self.last_seq.items() if forget <= now and o not in self.entries]:
            del self.last_seq[origin]
        return gone

    def descriptions(self) -> list[Description]:
        """Everything held, sorted by origin."""
        return [self.entries[o].description for o in sorted(self.entries)]


def _shape(node: NodeInfo) -> NodeInfo:
    """The description with its link costs zeroed (they wander with RTT on tunnel links).

    Derived with ``replace`` so a field added to NodeInfo later counts as shape by default.
    """
    links = sorted((replace(lk, cost=0) for lk in node.links), key=lambda lk: (lk.router_id, lk.interface))
    return replace(node, links=tuple(links))


def _boundary(after: float, period: float) -> float:
    """The first multiple of ``period`` at least half a period after ``after``."""
    return (math.floor((after + period / 2) / period) + 1) * period


def next_refresh(sent_wall: float, lifetime: float) -> float:
    """Wall-clock time of the next refresh of a description sent at ``sent_wall``.

    Refreshes go out on slots shared by the whole mesh (multiples of a third
    of the lifetime on the wall clock), so every node's refresh travels in the
    same wave: a node then hears of its neighbours' refreshes in a few bursts
    per slot instead of one wake-up per origin and copy.  The next slot at
    least half a period after the last description is taken: a change sent
    just before a slot makes the next refresh wait a slot, and no gap between
    two descriptions exceeds half the lifetime.
    """
    return _boundary(sent_wall, lifetime / 3)


def next_description(own: NodeInfo, sent: NodeInfo | None, sent_wall: float, lifetime: float) -> float:
    """Wall-clock time at which to sign and flood a new description of ourselves (-inf: now).

    ``sent`` went out at ``sent_wall``.  A link, prefix, key, role or uplink
    that came or went goes out at once.  A cost that merely moved (RTT jitter
    on a tunnel) waits for the next wave, every sixth of the lifetime on the
    wall clock, at least a twelfth after the last description, and travels
    with the other nodes' cost moves and refreshes instead of re-flooding the
    mesh on its own.  Otherwise the next refresh slot.
    """
    if sent is None or (own != sent and _shape(own) != _shape(sent)):
        return -math.inf
    refresh = next_refresh(sent_wall, lifetime)
    return refresh if own == sent else min(refresh, _boundary(sent_wall, lifetime / 6))


@record
class Identity:
    """What a node says of itself besides its links and prefixes: from its config."""

    name: str
    keys: tuple[str, ...] = ()  # WireGuard public keys (uplink, gateway, managed tunnels)
    endpoints: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


def describe_node(model: TopologyModel, synced: bool, me: Identity,
                  uplinks: tuple[UplinkChoice, ...] = ()) -> NodeInfo | None:
    """This node as babeld shows it and its config names it; None until babeld is synced.

    ``uplinks`` is what this node's uplink controllers make of their gateways now.
    """
    if not synced or not model.me.router_id:
        return None
    links = []
    for key, n in sorted(model.neighbours.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        rid = model.neighbour_router_id(key)
        if n.reachable and rid:
            links.append(Link(rid, n.cost, key[1]))
    prefixes = sorted({str(x.prefix) for x in model.xroutes.values()})
    return NodeInfo(me.name, model.me.router_id, tuple(links), tuple(prefixes), me.keys, me.endpoints, me.roles,
                    uplinks)


def mesh_graph(nodes: Iterable[NodeInfo]) -> nx.MultiDiGraph:
    """The whole mesh: routers by router id, each link as its node reports it.

    A link reported by only one end still shows (the other end may not have
    spoken yet, or be a plain babeld); both ends' reports become two directed
    edges, with each end's own cost, as Babel's costs are per direction.
    """
    nodes = list(nodes)
    graph = nx.MultiDiGraph()
    for node in nodes:
        graph.add_node(node.router_id, name=node.name, prefixes=node.prefixes, roles=node.roles,
                       wg_keys=node.wg_keys, endpoints=node.endpoints, uplinks=node.uplinks, reported=True)
    for node in nodes:
        for link in node.links:
            if not graph.has_node(link.router_id):
                graph.add_node(link.router_id, name=link.router_id, prefixes=(), roles=(), wg_keys=(), endpoints=(),
                               uplinks=(), reported=False)
            graph.add_edge(node.router_id, link.router_id, key=link.interface, cost=link.cost)
    return graph

