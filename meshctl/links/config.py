"""The ``[links]`` section of a node config: the neighbours this node keeps tunnels to.

Loaded by :func:`meshctl.config.parse_config` only for a config that has the
section, so that other nodes do not build these types at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshctl.config import _endpoint, _keys, _public_key
from meshctl.errors import ConfigError
from meshctl.listen import parse_listen
from meshctl.records import record
from meshctl.tomlfile import Fields

if TYPE_CHECKING:
    from meshctl.wireguard.keys import KeyPair


@record
class PathConfig:
    """One underlay path to a neighbour: a tunnel of its own, a Babel interface of its own."""

    interface: str
    listen_port: int  # our end's UDP port on this path (one per tunnel)
    endpoint: str | None  # the neighbour's ADDRESS:PORT on this path; None: it calls us, WireGuard learns where from
    rxcost: int | None = None  # babeld's rxcost on this tunnel: what the neighbour pays to send to us over it
    babel: str | None = None  # babeld interface options for this path (default: [links] babel)
    fwmark: int = 0  # mark on the tunnel's own UDP packets, for policy routing it out of one uplink


@record
class NeighbourConfig:
    """A neighbour this node keeps tunnels to (link automation).

    With ``paths``, one tunnel per path, and Babel picks among them.  Without,
    one tunnel whose endpoint moves along ``endpoints`` when the neighbour
    falls silent.  ``from_gossip`` adds what the neighbour advertises:
    ``"endpoints"`` to that one tunnel's list, ``"paths"`` one tunnel per
    advertised address (path k: our port ``listen_port + k``, theirs ``port + k``).
    """

    name: str
    public_key: str
    endpoints: tuple[str, ...]
    interface: str
    listen_port: int
    paths: tuple[PathConfig, ...] = ()
    from_gossip: str = ""  # "", "endpoints" or "paths"
    port: int = 0  # the neighbour's port (first port, for gossip paths) at the addresses it advertises
    babel: str | None = None  # babeld interface options for its tunnels (default: [links] babel)

    @property
    def per_path(self) -> bool:
        """One tunnel per path (Babel chooses), not one tunnel that moves."""
        return bool(self.paths) or self.from_gossip == "paths"

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Every interface name this neighbour's tunnels may take."""
        if not self.per_path:
            return (self.interface,)
        from meshctl.links.plan import MAX_PATHS, gossip_interface

        learnt = [gossip_interface(self.interface, k) for k in range(MAX_PATHS)] if self.from_gossip == "paths" else []
        return tuple([p.interface for p in self.paths] + learnt)

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every UDP port this neighbour's tunnels may listen on."""
        if not self.per_path:
            return (self.listen_port,)
        from meshctl.links.plan import MAX_PATHS

        learnt = [self.listen_port + k for k in range(MAX_PATHS)] if self.from_gossip == "paths" else []
        return tuple([p.listen_port for p in self.paths] + learnt)


@record
class LinksConfig:
    """Link automation: the per-neighbour tunnels meshctl creates and babeld runs on."""

    keys: KeyPair
    keepalive: int
    dead_after: float  # seconds without a packet from the neighbour: try its next endpoint
    babel: str  # what follows "interface IFNAME" in the command to babeld
    neighbours: tuple[NeighbourConfig, ...]


def _babel_options(f: Fields, key: str, default: str | None) -> str | None:
    text = f.take(key, str, default)
    if text is not None and any(ch in text for ch in "\n\r"):
        f.error(key, "one line of babeld interface options")
    return text


def _listen_ports(f: Fields, key: str, required: bool) -> int:
    port = f.take(key, int, 0, required=required)  # each tunnel has its own UDP port
    if port and not 0 < port < 65536:
        f.error(key, "must be 1..65535")
    return port


def _path(raw: object, where: str, k: int, base: str, source: str, errors: list[ConfigError]) -> PathConfig:
    from meshctl.links.plan import path_interface  # only a node with [links] needs the link plan

    pf = Fields(raw, where, source, errors)
    endpoint = _endpoint(pf, "endpoint", False)
    listen_port = _listen_ports(pf, "listen_port", True)
    interface = pf.take("interface", str, path_interface(base, k))
    if len(interface.encode()) > 15 or "/" in interface or " " in interface:
        pf.error("interface", "not a valid interface name (at most 15 characters, no '/' or spaces)")
    rxcost = pf.take("rxcost", int, None)
    if rxcost is not None and not 1 <= rxcost < 65535:
        pf.error("rxcost", "must be 1..65534 (babeld's rxcost; 96 is a wired link's)")
    babel = _babel_options(pf, "babel", None)
    fwmark = pf.take("fwmark", int, 0)
    if not 0 <= fwmark < 2**32:
        pf.error("fwmark", "must be 0..4294967295")
    pf.finish()
    return PathConfig(interface, listen_port, endpoint, rxcost, babel, fwmark)


def _neighbour(raw: object, j: int, source: str, errors: list[ConfigError]) -> NeighbourConfig:
    from meshctl.links.plan import MAX_PATHS, interface_name  # only a node with [links] needs the link plan

    nf = Fields(raw, f"links.neighbour[{j}]", source, errors)
    name = nf.take("name", str, "", required=True)
    public_key = _public_key(nf)
    raw_paths = nf.take("path", list, [])
    from_gossip = nf.take("from_gossip", str, "")
    if from_gossip not in ("", "endpoints", "paths"):
        nf.error("from_gossip", 'must be "endpoints" (more endpoints for one tunnel) or "paths" (a tunnel per address)')
        from_gossip = ""
    if raw_paths and from_gossip == "endpoints":
        nf.error("from_gossip", '"endpoints" is for one tunnel; with [[links.neighbour.path]] use "paths"')
    endpoints = []
    needs_endpoints = not raw_paths and not from_gossip
    for k, text in enumerate(nf.take_list("endpoints", str, [], required=needs_endpoints)):
        try:
            parse_listen(text)
            endpoints.append(text)
        except ValueError as exc:
            nf.error(f"endpoints[{k}]", str(exc))
    if raw_paths and endpoints:
        nf.error("endpoints", "give each [[links.neighbour.path]] its endpoint instead")
    interface = nf.take("interface", str, interface_name(name))
    if len(interface.encode()) > 15 or "/" in interface or " " in interface:
        nf.error("interface", "not a valid interface name (at most 15 characters, no '/' or spaces)")
    listen_port = _listen_ports(nf, "listen_port", not raw_paths or from_gossip == "paths")
    if raw_paths and listen_port and from_gossip != "paths":
        nf.error("listen_port", "give each [[links.neighbour.path]] its listen_port instead")
    if from_gossip == "paths" and listen_port + MAX_PATHS > 65536:
        nf.error("listen_port", f"gossip paths take {MAX_PATHS} ports from listen_port on")
    port = _listen_ports(nf, "port", bool(from_gossip))
    if port and not from_gossip:
        nf.error("port", "only with from_gossip (the port at the addresses the neighbour advertises)")
    if len(raw_paths) > MAX_PATHS:
        nf.error("path", f"at most {MAX_PATHS} paths per neighbour")
    babel = _babel_options(nf, "babel", None)
    paths = tuple(_path(p, f"links.neighbour[{j}].path[{k}]", k, interface, source, errors)
                  for k, p in enumerate(raw_paths[:MAX_PATHS]))
    nf.finish()
    return NeighbourConfig(name, public_key, tuple(endpoints), interface, listen_port, paths, from_gossip, port, babel)


def parse_links(raw: object, source: str, errors: list[ConfigError]) -> LinksConfig | None:
    """The ``[links]`` section, checked; None when its key could not be read (the problem is in ``errors``)."""
    f = Fields(raw, "links", source, errors)
    keys = _keys(f, source, errors)
    keepalive = f.take("keepalive", int, 5)
    if not 1 <= keepalive <= 60:
        f.error("keepalive", "must be 1..60 seconds (the neighbour's silence is how a dead path shows)")
    dead_after = f.take("dead_after", float, 15.0)
    if not dead_after > keepalive:
        f.error("dead_after", f"must be longer than keepalive ({keepalive} s)")
    babel = _babel_options(f, "babel", "type tunnel") or "type tunnel"
    neighbours = [_neighbour(n, j, source, errors) for j, n in enumerate(f.take("neighbour", list, [], required=True))]
    for what, values in (("name", [n.name for n in neighbours]),
                         ("interface", [i for n in neighbours for i in n.interfaces]),
                         ("listen_port", [p for n in neighbours for p in n.listen_ports if p])):
        if len(set(values)) != len(values):
            f.error("neighbour", {"name": "two neighbours share a name", "interface": "two tunnels share an interface",
                                  "listen_port": "two tunnels share a listen_port"}[what])
    f.finish()
    if keys is None:
        return None
    return LinksConfig(keys, keepalive, dead_after, babel, tuple(neighbours))
