"""The daemon's babeld client on its own: connect, ``monitor``, and print the seconds until the
table is in the model (synced), then the number of routes.  ``python bench/sync_client.py unix:PATH``."""

import asyncio
import contextlib
import sys

from meshctl.babel.connection import Client
from meshctl.babel.endpoint import parse_endpoint
from meshctl.topology.model import MeshView


async def main(address: str) -> None:
    view = MeshView()
    client = Client(parse_endpoint(address), view)
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(client.run())
    await client.synced.wait()
    took = loop.time() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    print(took, view.model.route_count)


asyncio.run(main(sys.argv[1]))
