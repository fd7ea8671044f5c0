"""What real babelds throw at meshctl: UTF-8 interface names, a line malformed on every connection,
and tables far bigger than the seed's, against a stand-in babeld (tests/standin.py).
The same with a real babeld is in tests/lab/test_babel_utf8.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.standin import route_lines, standin_babeld
from meshctl.babel.connection import Backoff, Client
from meshctl.babel.endpoint import Endpoint
from meshctl.cli import main
from meshctl.gossip.signing import SigningKey, write_signing_key
from meshctl.topology.model import MeshView

NAME = "ra\u00e90"  # Linux allows it; babeld prints it as it is
UTF8_TABLE = (
    f"add interface {NAME} up true ipv6 fe80::1\n"
    f"add neighbour 5565 address fe80::5 if {NAME} reach ffff ureach 0000 rxcost 96 txcost 96 cost 96\n"
    f"add route 77 prefix 10.99.0.5/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:05 metric 96 "
    f"refmetric 0 via fe80::5 if {NAME}\n"
).encode()
MESHCTL = os.path.join(os.path.dirname(sys.executable), "meshctl")
MALFORMED = b"change route 99 prefix 10.0.0.9/32 from 0.0.0.0/0 installed maybe metric 1\n"


def test_utf8_interface_names_show_in_topology_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with standin_babeld(str(tmp_path), UTF8_TABLE):
        code = main(["topology", "dump", "--babel", f"unix:{tmp_path}/babel.sock"])
    dump = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [i["name"] for i in dump["interfaces"]] == [NAME]
    assert [(n["interface"], n["router_id"]) for n in dump["neighbours"]] == [(NAME, "02:00:00:00:00:00:00:05")]
    assert [r["interface"] for r in dump["routes"]] == [NAME]


async def test_client_with_utf8_names_syncs(tmp_path: Path) -> None:
    view = MeshView()
    with standin_babeld(str(tmp_path), UTF8_TABLE) as standin:
        client = Client(Endpoint("unix", path=standin.path), view)
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.synced.wait(), 10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert client.stats.malformed == 0
    assert set(view.model.interfaces) == {NAME}
    assert [r.interface for r in view.model.routes.values()] == [NAME]


async def test_a_line_malformed_on_every_connection_costs_no_reconnect(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """In the table and in the live stream, every time: skipped, counted, logged once per kind, no resync."""
    view = MeshView()
    table = UTF8_TABLE + MALFORMED
    with standin_babeld(str(tmp_path), table, after_monitor=MALFORMED * 3) as standin:
        client = Client(Endpoint("unix", path=standin.path), view, Backoff(initial=0.01, maximum=0.05))
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.synced.wait(), 10)
            for _ in range(150):  # 1.5 s: a storm used to open thousands of connections in that time
                if client.stats.malformed >= 4:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            synced = client.synced.is_set() and view.synced
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert synced
    assert standin.connections == 1 and client.stats.connects == 1
    assert client.stats.malformed_kinds == {"bad-installed": 4}
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1 and "bad-installed" in warnings[0].getMessage()
    assert len(view.model.routes) == 1


async def test_300000_routes_sync(tmp_path: Path) -> None:
    """The sync deadline is babeld's silence, not a wall-clock budget our own parsing eats into."""
    view = MeshView()
    with standin_babeld(str(tmp_path), route_lines(300_000)) as standin:
        client = Client(Endpoint("unix", path=standin.path), view)
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.synced.wait(), 300)  # a hang guard, not a speed goal (see make bench)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert client.stats.connects == 1 and client.stats.malformed == 0
    assert len(view.model.routes) == 300_000


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        port: int = s.getsockname()[1]
        return port


def test_daemon_stays_synced_against_a_line_malformed_on_every_connection(tmp_path: Path) -> None:
    """The issue's own check: ``meshctl daemon`` for 10 s against the stand-in opens one babeld connection."""
    key = tmp_path / "gossip.key"
    signing = SigningKey.generate()
    write_signing_key(str(key), signing)
    control = tmp_path / "meshctl.sock"
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nname = "n1"\nbabel = "unix:{tmp_path}/babel.sock"\ncontrol_socket = "{control}"\n\n'
        f'[gossip]\nprivate_key_file = "{key}"\nport = {_free_udp_port()}\n\n'
        f'[[gossip.trust]]\nname = "n1"\npublic_key = "{signing.public}"\n'
    )
    with standin_babeld(str(tmp_path), UTF8_TABLE + MALFORMED, after_monitor=MALFORMED) as standin:
        daemon = subprocess.Popen([MESHCTL, "daemon", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(10)
            status = subprocess.run([MESHCTL, "status", "--json", "--socket", str(control)],
                                    capture_output=True, text=True, check=True)
        finally:
            daemon.terminate()
            _, log = daemon.communicate(timeout=10)
    babel = json.loads(status.stdout)["babel"]
    assert babel["synced"] and babel["reconnects"] == 0 and babel["malformed_lines"] == 2
    assert standin.connections == 1
    assert log.count("malformed line") == 1, log

