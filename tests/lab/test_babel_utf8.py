"""A real babeld on an interface whose name is UTF-8 (``tXXXXé0``): meshctl's client syncs, counts
no malformed line, and ``topology dump`` shows the interface, the neighbour on it and the route through it.

Two namespaces joined by one veth pair with UTF-8 names, a babeld in each; nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.babel.connection import Client
from meshctl.babel.endpoint import parse_endpoint
from meshctl.topology.model import MeshView
from meshctl.topology.snapshot import fetch_model
from tests.lab.conftest import unique_tag

MESHCTL = os.path.join(os.path.dirname(sys.executable), "meshctl")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def utf8_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two babelds over a veth pair named TAGé0 / TAGé1; yields (babel socket of the first, its interface name)."""
    tag = unique_tag()
    names = (f"{tag}\u00e90", f"{tag}\u00e91")
    spaces = (f"{tag}-u0", f"{tag}-u1")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in spaces:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", spaces[0], "link", "add", names[0], "type", "veth", "peer", "name", names[1], "netns", spaces[1])
        for k, (ns, name) in enumerate(zip(spaces, names, strict=True)):
            ip("-n", ns, "link", "set", name, "up")
            ip("-n", ns, "addr", "add", f"10.77.0.{k + 1}/32", "dev", "lo")
            run = tmp_path / f"b{k}"
            run.mkdir()
            conf = run / "babeld.conf"
            conf.write_text(
                f"router-id 02:00:00:00:00:77:00:0{k + 1}\nlocal-path-readwrite {run}/babel.sock\n"
                f"pid-file {run}/babeld.pid\nstate-file {run}/babel-state\n"
                f"interface {name} type wired hello-interval 0.2\n"
                f"redistribute local ip 10.77.0.{k + 1}/32 allow\nredistribute local deny\nredistribute deny\n",
                encoding="utf-8",
            )
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "babeld", "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=(run / "babeld.log").open("wb")))
        yield f"unix:{tmp_path}/b0/babel.sock", names[0]
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _route_through(address: str, name: str) -> bool:
    try:
        model = asyncio.run(fetch_model(address, 2.0))
    except Exception:  # babeld still starting
        return False
    return any(r.interface == name and str(r.prefix) == "10.77.0.2/32" for r in model.routes.values())


def test_real_babeld_with_a_utf8_interface_name(utf8_pair: tuple[str, str]) -> None:
    address, name = utf8_pair
    for _ in range(100):
        if _route_through(address, name):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no route to 10.77.0.2/32 through {name} within 20 s")

    async def sync() -> tuple[Client, MeshView]:
        view = MeshView()
        client = Client(parse_endpoint(address), view)
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.synced.wait(), 10)
            await asyncio.sleep(1.0)  # a second of live updates: none of them is malformed either
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return client, view

    client, view = asyncio.run(sync())
    assert client.stats.connects == 1 and client.stats.malformed == 0
    assert name in view.model.interfaces

    out = subprocess.run([MESHCTL, "topology", "dump", "--babel", address], capture_output=True, check=True)
    dump = json.loads(out.stdout.decode())
    assert name in [i["name"] for i in dump["interfaces"]]
    assert [n["router_id"] for n in dump["neighbours"] if n["interface"] == name] == ["02:00:00:00:00:77:00:02"]
    assert any(r["interface"] == name and r["prefix"] == "10.77.0.2/32" for r in dump["routes"])
