"""The asyncio adapter against a scripted peer on a temporary unix socket.

These check the adapter's own duties (banner, replies, reconnect, resync);
behaviour against real babeld is in tests/lab/.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from meshctl.babel import events as ev
from meshctl.babel.connection import Backoff, Client, Connection
from meshctl.babel.endpoint import Endpoint
from meshctl.babel.errors import BabelConnectionError, CommandError
from meshctl.topology.model import MeshView

BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost fake\nmy-id 02:00:00:00:00:00:00:01\nok\n"
NEIGH = b"add neighbour 1 address fe80::2 if wg1 reach ffff ureach 0000 rxcost 96 txcost 96 cost 96\n"
ROUTE = (
    b"add route 2 prefix 10.0.0.2/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
    b"metric 96 refmetric 0 via fe80::2 if wg1\n"
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_babeld(tmp_path, handler: Handler):  # noqa: ANN001, ANN201
    path = str(tmp_path / "babel.sock")
    server = await asyncio.start_unix_server(handler, path)
    try:
        yield Endpoint("unix", path=path)
    finally:
        server.close()
        await server.wait_closed()


async def answer_commands(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, table: bytes) -> None:
    while line := await reader.readline():
        cmd = line.decode().strip()
        if cmd in ("dump", "monitor"):
            writer.write(table + b"ok\n")
        elif cmd.startswith("flush interface"):
            writer.write(b"no No such interface\n")
        elif cmd == "quit":
            break
        else:
            writer.write(b"bad\n")
        await writer.drain()


async def run_until_second_sync(endpoint: Endpoint, view: MeshView) -> tuple[Client, bool]:
    """Run a client until the view has synced twice (or 2 s); return it and whether it was synced then."""
    client = Client(endpoint, view, Backoff(initial=0.01, maximum=0.05))
    task = asyncio.create_task(client.run())
    try:
        for _ in range(200):
            if view.syncs >= 2:
                break
            await asyncio.sleep(0.01)
        return client, view.synced
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_open_dump_and_command_errors(tmp_path) -> None:  # noqa: ANN001
    async def handler(reader, writer):  # noqa: ANN001, ANN202
        writer.write(BANNER)
        await answer_commands(reader, writer, NEIGH + ROUTE)
        writer.close()

    async with fake_babeld(tmp_path, handler) as endpoint:
        conn = await Connection.open(endpoint)
        assert conn.banner.router_id == "02:00:00:00:00:00:00:01"
        events = await conn.dump()
        assert [type(e) for e in events] == [ev.NeighbourUpdate, ev.RouteUpdate]
        with pytest.raises(CommandError, match="No such interface"):
            await conn.command("flush interface wg9")
        with pytest.raises(CommandError, match="'bad'"):
            await conn.command("interface wg9")
        await conn.wait_closed()


async def test_no_listener_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(BabelConnectionError, match="No such file"):
        await Connection.open(Endpoint("unix", path=str(tmp_path / "nothing.sock")))


async def test_peer_that_is_not_babeld(tmp_path) -> None:  # noqa: ANN001
    async def handler(reader, writer):  # noqa: ANN001, ANN202
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async with fake_babeld(tmp_path, handler) as endpoint:
        with pytest.raises(BabelConnectionError, match="closed"):
            await Connection.open(endpoint, timeout=2)


async def test_silent_peer_times_out(tmp_path) -> None:  # noqa: ANN001
    async def handler(reader, writer):  # noqa: ANN001, ANN202
        await asyncio.sleep(5)

    async with fake_babeld(tmp_path, handler) as endpoint:
        with pytest.raises(BabelConnectionError, match="no banner"):
            await Connection.open(endpoint, timeout=0.2)


async def test_client_reconnects_and_resyncs_without_stale_entries(tmp_path) -> None:  # noqa: ANN001
    sessions = 0

    async def handler(reader, writer):  # noqa: ANN001, ANN202
        nonlocal sessions
        sessions += 1
        writer.write(BANNER)
        await reader.readline()  # monitor
        if sessions == 1:
            writer.write(NEIGH + ROUTE + b"ok\n")
            await writer.drain()
            writer.close()  # babeld dies
            return
        writer.write(NEIGH + b"ok\n")  # came back without the route
        await writer.drain()
        await reader.read()

    view = MeshView()
    async with fake_babeld(tmp_path, handler) as endpoint:
        client, synced = await run_until_second_sync(endpoint, view)
    assert view.syncs >= 2 and synced
    assert client.stats.reconnects >= 1
    assert view.model.routes == {}
    assert len(view.model.neighbours) == 1


async def test_malformed_line_is_skipped_and_counted_without_a_resync(tmp_path, caplog) -> None:  # noqa: ANN001
    sessions = 0

    async def handler(reader, writer):  # noqa: ANN001, ANN202
        nonlocal sessions
        sessions += 1
        writer.write(BANNER)
        await reader.readline()
        writer.write(NEIGH + b"ok\n")
        writer.write(b"change route 2 prefix 10.0.0.2/32 from 0.0.0.0/0 installed yes metric oops\n" + ROUTE)
        await writer.drain()
        await reader.read()

    view = MeshView()
    async with fake_babeld(tmp_path, handler) as endpoint:
        client, synced = await run_until_second_sync(endpoint, view)
    assert sessions == 1 and client.stats.connects == 1 and view.syncs == 1
    assert client.stats.malformed == 1 and client.stats.malformed_kinds == {"bad-metric": 1}
    assert len(view.model.routes) == 1  # the good line after the bad one was applied
    assert synced


def test_backoff_grows_and_resets_only_after_a_stable_session() -> None:
    b = Backoff(initial=0.1, maximum=1.0, stable=30.0)
    assert [b.next_delay() for _ in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    b.session_ended(0.5)  # monitor succeeded, then the session broke at once: keep backing off
    assert b.next_delay() == 1.0
    b.session_ended(30.0)
    assert b.next_delay() == 0.0


async def test_deadline_is_babelds_silence_not_the_whole_exchange(tmp_path) -> None:  # noqa: ANN001
    """A table that takes 1 s to arrive, a line every 50 ms, fits a 0.3 s deadline; silence does not."""

    async def handler(reader, writer):  # noqa: ANN001, ANN202
        writer.write(BANNER)
        await reader.readline()  # dump
        for i in range(20):
            writer.write(f"add interface wg{i} up true\n".encode())
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"ok\n")
        await reader.readline()  # the second dump gets no answer at all
        await reader.read()

    async with fake_babeld(tmp_path, handler) as endpoint:
        conn = await Connection.open(endpoint)
        events = await conn.dump(timeout=0.3)
        assert len(events) == 20
        with pytest.raises(BabelConnectionError, match="silent for 0.3s while the reply to 'dump' was due"):
            await conn.dump(timeout=0.3)
        await conn.wait_closed()


async def test_chatter_on_a_beat_loses_nothing_and_a_reply_or_an_eof_never_waits_for_it(tmp_path) -> None:  # noqa: ANN001
    """With a read pace, babeld's chatter is read on the beat; every line still arrives, in order."""
    changes = [ROUTE.replace(b"add", b"change").replace(b"metric 96", b"metric %d" % m) for m in range(100, 140)]
    go_on = asyncio.Event()

    async def handler(reader, writer):  # noqa: ANN001, ANN202
        writer.write(BANNER)
        assert (await reader.readline()).strip() == b"monitor"
        writer.write(NEIGH + ROUTE + b"ok\n")
        for line in changes:  # chatty: a line every 5 ms
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(0.005)
        assert (await reader.readline()).strip() == b"interface wg9"
        writer.write(b"ok\n")
        await writer.drain()
        await go_on.wait()
        writer.close()

    loop = asyncio.get_running_loop()
    beats: list[float] = []

    def pace(now: float) -> float:
        beats.append(now)
        return now + 0.05

    async with fake_babeld(tmp_path, handler) as endpoint:
        conn = await Connection.open(endpoint, pace=pace)
        metrics: list[int] = []
        conn.set_handler(lambda e: metrics.append(e.route.metric) if isinstance(e, ev.RouteUpdate) else None)
        await conn.command("monitor")
        while len(metrics) < 1 + len(changes):
            await asyncio.sleep(0.01)
        assert metrics == [96, *range(100, 140)]
        assert 2 <= len(beats) < len(changes)  # read in batches, not a wake-up a line
        started = loop.time()
        await conn.command("interface wg9", timeout=1.0)  # the reply does not wait for a beat
        go_on.set()
        assert await asyncio.wait_for(conn.closed, 1.0) == "babeld closed the connection"
        assert loop.time() - started < 1.0
        await conn.wait_closed()
