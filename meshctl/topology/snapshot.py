"""One-shot views of a babeld: connect, take one ``dump``, leave."""

from __future__ import annotations

import logging

from meshctl.babel import events as ev
from meshctl.babel.connection import Connection, table_arriving
from meshctl.babel.endpoint import parse_endpoint
from meshctl.babel.protocol import Malformed
from meshctl.topology.model import SelfInfo, TopologyModel

log = logging.getLogger("meshctl")


async def fetch_model(address: str, timeout: float) -> TopologyModel:
    """Connect to babeld, take one ``dump``, and leave (frees babeld's slot).

    ``timeout`` bounds connecting and babeld's silence, not the whole dump: a
    big table takes as long as it takes us to read.  Lines that do not parse
    are skipped; each kind is logged once, with how many there were.
    """
    endpoint = parse_endpoint(address)
    conn = await Connection.open(endpoint, timeout)
    model = TopologyModel(SelfInfo(conn.banner.router_id, conn.banner.host, conn.banner.version))
    bad: dict[str, list[Malformed]] = {}

    def handle(event: ev.Event) -> None:
        if isinstance(event, Malformed):
            bad.setdefault(event.error.kind, []).append(event)
        else:
            model.apply(event)

    conn.set_handler(handle)
    try:
        with table_arriving():
            await conn.command("dump", timeout)
    finally:
        await conn.wait_closed()
    for kind, lines in bad.items():
        log.warning("babeld at %s sent %d malformed line(s) of kind %s, skipped; first: %s",
                    endpoint, len(lines), kind, lines[0].error)
    return model
