"""Render a :class:`~meshctl.topology.model.TopologyModel` as JSON, NetJSON, DOT or GraphML.

Pure functions returning plain data or text; output is deterministic (sorted)
so dumps can be diffed and tested.  The JSON schema is documented in
``docs/topology-json.md`` and versioned by its ``schema`` field.
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

from meshctl.topology.model import INFINITY, TopologyModel, neighbour_label

JSON_SCHEMA_ID = "meshctl.topology/1"


def _num(value: int) -> int | None:
    """Babel's infinity becomes null: JSON consumers should not add 65535s."""
    return None if value >= INFINITY else value


def to_json(model: TopologyModel) -> dict[str, Any]:
    """The node's view in meshctl's own stable schema."""
    me = model.me
    neighbours = []
    for (address, ifname), n in sorted(model.neighbours.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        neighbours.append(
            {
                "address": str(address),
                "interface": ifname,
                "router_id": model.neighbour_router_id((address, ifname)),
                "reach": f"{n.reach:04x}",
                "ureach": f"{n.ureach:04x}",
                "rxcost": n.rxcost,
                "txcost": n.txcost,
                "cost": _num(n.cost),
                "rtt_ms": n.rtt,
                "rttcost": n.rttcost,
                "reachable": n.reachable,
            }
        )
    routes = [
        {
            "prefix": str(r.prefix),
            "from": str(r.src_prefix),
            "router_id": r.router_id,
            "metric": _num(r.metric),
            "refmetric": _num(r.refmetric),
            "via": str(r.via),
            "interface": r.interface,
            "installed": r.installed,
            "reachable": r.reachable,
        }
        for r in sorted(
            model.routes.values(),
            key=lambda r: (r.prefix.version, r.prefix, str(r.src_prefix), r.metric, str(r.via), r.interface),
        )
    ]
    return {
        "schema": JSON_SCHEMA_ID,
        "router_id": me.router_id,
        "host": me.host,
        "babeld_version": me.version,
        "interfaces": [
            {
                "name": i.name,
                "up": i.up,
                "ipv6": str(i.ipv6) if i.ipv6 else None,
                "ipv4": str(i.ipv4) if i.ipv4 else None,
            }
            for _, i in sorted(model.interfaces.items())
        ],
        "neighbours": neighbours,
        "routes": routes,
        "exported": [
            {"prefix": str(x.prefix), "from": str(x.src_prefix), "metric": x.metric}
            for x in sorted(model.xroutes.values(), key=lambda x: (x.prefix.version, x.prefix, str(x.src_prefix)))
        ],
        "routers": [
            {"router_id": rid, "prefixes": sorted(str(p) for p in prefixes)}
            for rid, prefixes in sorted(model.routers().items())
        ],
    }


def _babeld_version(version: str) -> str:
    return version.removeprefix("babeld-") or "unknown"


def to_netjson(model: TopologyModel) -> dict[str, Any]:
    """NetJSON NetworkGraph (protocol ``babel``, metric ``babel``).

    Nodes are routers by router id; links are this node's neighbour links
    with babeld's link cost.  Unreachable links (cost 65535) are left out, as
    netdiff does, so a visualiser does not draw dead links as live.
    """
    me = model.me
    local = me.router_id or "self"
    own_prefixes = sorted(str(x.prefix) for x in model.xroutes.values())
    nodes: dict[str, dict[str, Any]] = {
        local: {"id": local, "label": me.host or local, "local_addresses": own_prefixes, "properties": {"local": True}}
    }
    for rid, prefixes in sorted(model.routers().items()):
        if rid == local:
            continue
        nodes[rid] = {
            "id": rid,
            "label": rid,
            "local_addresses": sorted(str(p) for p in prefixes),
            "properties": {"metric": _num(model.best_metric(rid))},
        }
    links = []
    for (address, ifname), n in sorted(model.neighbours.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        if not n.reachable:
            continue
        target = model.neighbour_router_id((address, ifname)) or neighbour_label((address, ifname))
        nodes.setdefault(target, {"id": target, "label": target, "local_addresses": [], "properties": {}})
        links.append(
            {
                "source": local,
                "target": target,
                "cost": float(n.cost),
                "cost_text": f"rxcost {n.rxcost} txcost {n.txcost}",
                "properties": {
                    "interface": ifname,
                    "address": str(address),
                    "rxcost": n.rxcost,
                    "txcost": n.txcost,
                    "rtt_ms": n.rtt,
                    "reach": f"{n.reach:04x}",
                },
            }
        )
    return {
        "type": "NetworkGraph",
        "protocol": "babel",
        "version": _babeld_version(me.version),
        "metric": "babel",
        "router_id": local,
        "label": me.host or local,
        "nodes": [nodes[k] for k in sorted(nodes)],
        "links": links,
    }


def _dot_id(*lines: str) -> str:
    """A quoted DOT id; several lines are joined with DOT's own line break."""
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(model: TopologyModel) -> str:
    """Graphviz DOT: routers as boxes with their prefixes, links with cost."""
    return netjson_to_dot(to_netjson(model))


def netjson_to_dot(data: dict[str, Any]) -> str:
    """DOT from a NetworkGraph (ours: this node's view, or the whole mesh)."""
    lines = [f"digraph {_dot_id('babel ' + data['label'])} {{", "  node [shape=box, fontname=monospace];"]
    for node in data["nodes"]:
        style = ", style=bold" if node["properties"].get("local") else ""
        label = _dot_id(node["label"], *node["local_addresses"])
        lines.append(f"  {_dot_id(node['id'])} [label={label}{style}];")
    for link in data["links"]:
        props = link["properties"]
        label = _dot_id(props.get("interface", ""), f"cost {int(link['cost'])}")
        lines.append(f"  {_dot_id(link['source'])} -> {_dot_id(link['target'])} [label={label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_graphml(model: TopologyModel) -> str:
    """GraphML (for Gephi, yEd, networkx), from the same nodes and links as NetJSON.

    GraphML attributes are scalars: prefix lists become comma-separated text,
    and unknown values (no RTT measured) are left out rather than written as 0.
    """
    return netjson_to_graphml(to_netjson(model))


def netjson_to_graphml(data: dict[str, Any]) -> str:
    """GraphML from a NetworkGraph (ours: this node's view, or the whole mesh)."""
    graph = nx.MultiDiGraph(name=f"babel {data['label']}", protocol="babel", router_id=data["router_id"])
    for node in data["nodes"]:
        attrs = {"label": node["label"], "local_addresses": ",".join(node["local_addresses"])}
        attrs |= {k: (",".join(v) if isinstance(v, list) else v) for k, v in node["properties"].items() if v is not None}
        graph.add_node(node["id"], **attrs)
    for link in data["links"]:
        attrs = {"cost": link["cost"]} | {k: v for k, v in link["properties"].items() if v is not None}
        graph.add_edge(link["source"], link["target"], key=attrs.get("interface", ""), **attrs)
    return "\n".join(nx.generate_graphml(graph, prettyprint=True)) + "\n"


MESH_SCHEMA_ID = "meshctl.mesh/1"


def mesh_json(graph: nx.MultiDiGraph, router_id: str, label: str) -> dict[str, Any]:
    """The whole mesh from gossip (see :func:`meshctl.gossip.table.mesh_graph`) in meshctl's schema."""
    return {
        "schema": MESH_SCHEMA_ID,
        "router_id": router_id,
        "label": label,
        "nodes": [
            {
                "router_id": rid,
                "name": attrs.get("name", rid),
                "prefixes": list(attrs.get("prefixes", ())),
                "roles": list(attrs.get("roles", ())),
                "wg_keys": list(attrs.get("wg_keys", ())),
                "endpoints": list(attrs.get("endpoints", ())),
                "reported": bool(attrs.get("reported", False)),
            }
            for rid, attrs in sorted(graph.nodes(data=True))
        ],
        "links": [
            {"from": u, "to": v, "interface": key, "cost": _num(attrs["cost"])}
            for u, v, key, attrs in sorted(graph.edges(keys=True, data=True))
        ],
    }


def mesh_to_netjson(doc: dict[str, Any]) -> dict[str, Any]:
    """A NetworkGraph of the whole mesh; links as each end reports them, dead ones left out."""
    return {
        "type": "NetworkGraph",
        "protocol": "babel",
        "version": "meshctl-gossip",
        "metric": "babel",
        "router_id": doc["router_id"],
        "label": doc["label"],
        "nodes": [
            {
                "id": n["router_id"],
                "label": n["name"],
                "local_addresses": n["prefixes"],
                "properties": {"roles": n["roles"], "reported": n["reported"], "local": n["router_id"] == doc["router_id"]},
            }
            for n in doc["nodes"]
        ],
        "links": [
            {"source": lk["from"], "target": lk["to"], "cost": float(lk["cost"]), "properties": {"interface": lk["interface"]}}
            for lk in doc["links"]
            if lk["cost"] is not None
        ],
    }


def render_mesh(doc: dict[str, Any], fmt: str) -> str:
    """The whole mesh in one of :data:`FORMATS`."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    data = mesh_to_netjson(doc)
    if fmt == "netjson":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "dot":
        return netjson_to_dot(data)
    if fmt == "graphml":
        return netjson_to_graphml(data)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


FORMATS = ("json", "netjson", "dot", "graphml")


def render(model: TopologyModel, fmt: str) -> str:
    """Render in one of :data:`FORMATS` as text."""
    if fmt == "json":
        return json.dumps(to_json(model), indent=2) + "\n"
    if fmt == "netjson":
        return json.dumps(to_netjson(model), indent=2) + "\n"
    if fmt == "dot":
        return to_dot(model)
    if fmt == "graphml":
        return to_graphml(model)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
