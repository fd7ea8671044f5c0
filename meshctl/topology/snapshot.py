"""One-shot views of a babeld: connect, take one ``dump``, leave."""

from __future__ import annotations

import logging

from meshctl.babel.connection import Connection
from meshctl.babel.endpoint import parse_endpoint
from meshctl.babel.protocol import Malformed
from meshctl.topology.model import SelfInfo, TopologyModel

log = logging.getLogger("meshctl")


async def fetch_model(address: str, timeout: float) -> TopologyModel:
    """Connect to babeld, take one ``dump``, and leave (frees babeld's slot)."""
    endpoint = parse_endpoint(address)
    conn = await Connection.open(endpoint, timeout)
    try:
        events = await conn.dump(timeout)
    finally:
        await conn.wait_closed()
    bad = [e for e in events if isinstance(e, Malformed)]
    if bad:
        log.warning("babeld at %s sent %d malformed line(s); first: %s", endpoint, len(bad), bad[0].error)
    model = TopologyModel(SelfInfo(conn.banner.router_id, conn.banner.host, conn.banner.version))
    model.apply_all(events)
    return model
