"""The node's part of the mesh map: its uplink choices for gossip, and the whole-mesh document.

Read from the daemon's state when asked (gossip's tick, a ``mesh`` query, a
``/mesh`` page refresh); nothing here keeps state of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from meshctl.gossip.table import UplinkChoice, describe_node, mesh_graph

if TYPE_CHECKING:
    from meshctl.config import NodeConfig
    from meshctl.node.daemon import Daemon


def served_addresses(config: NodeConfig) -> list[str]:
    """Addresses this node announces for others (a gateway's clients, in its config): never its own."""
    if config.gateway is None:
        return []
    return sorted({str(a) for c in config.gateway.clients for a in c.addresses})


def uplink_choices(daemon: Daemon) -> tuple[UplinkChoice, ...]:
    """What each of this node's uplinks makes of its gateways now: the map's uplink plane.

    One entry per gateway and address family (a dual-stack client may choose
    differently per family).  Read defensively: the uplink controllers grow,
    and the map needs only a name, a router id, a state word and the choice.
    """
    out = []
    model = daemon.view.model
    now, wall = time.monotonic(), time.time()  # the controllers' clocks (asyncio's loop clock is monotonic)
    for u in daemon.uplinks:
        by_name = {g.name: g for g in u.config.gateways}
        for family, group in sorted(getattr(u.ctl, "groups", {}).items()):
            address = getattr(group, "address", None)
            for view in u.ctl.candidates(family, model, u.device, now, wall):
                gw = by_name.get(view.name)
                rid = (gw.router_id or "") if gw is not None else ""
                if not rid and gw is not None and gw.mesh is not None:
                    route = model.installed_route(gw.mesh)
                    rid = route.router_id if route is not None else ""
                out.append(UplinkChoice(view.name, rid, view.state(u.config.hysteresis),
                                        view.name == getattr(group, "holder", None),
                                        str(address.ip) if address is not None else ""))
    return tuple(out)


def mesh_doc(daemon: Daemon) -> dict[str, Any]:
    """The whole mesh as gossip shows it (this node alone without gossip), schema ``meshctl.mesh/1``."""
    from meshctl.topology.export import mesh_json  # the exporters, when someone asks for the map

    me = daemon.view.model.me
    if daemon.gossip is not None:
        graph = daemon.gossip.graph()
    else:
        own = describe_node(daemon.view.model, daemon.view.synced, daemon.identity(), uplink_choices(daemon))
        graph = mesh_graph([own] if own else [])
    return mesh_json(graph, me.router_id, daemon.config.name, me.version)
