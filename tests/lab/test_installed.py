"""The demo's lab commands from a wheel installed with pipx, away from the checkout: the shipped topology by
name, a real seed mesh with its daemons (run by the installed interpreter), `lab status`, `status`, `lab down`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.conftest import unique_tag
from tests.packaging import build


def node_blocks(text: str) -> dict[str, list[str]]:
    """``lab status`` for people: node name -> the lines about its processes."""
    blocks: dict[str, list[str]] = {}
    node = ""
    for line in text.splitlines():
        if line.startswith("    "):
            blocks[node].append(line.strip())
        elif line.startswith("  ") and not line.startswith("  DEAD"):
            node = line.split()[0]
            blocks[node] = []
    return blocks


def test_pipx_installed_wheel_runs_the_seed_lab(tmp_path: Path) -> None:
    if shutil.which("pipx") is None and os.environ.get("CI") != "true":
        pytest.skip("pipx is not installed (./bootstrap installs it)")
    _, wheel = build(tmp_path / "dist")
    home = tmp_path / "away"  # no checkout here: the installed package must stand alone
    home.mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "PIPX_HOME": str(tmp_path / "pipx"),
           "PIPX_BIN_DIR": str(tmp_path / "bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    for name in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK"):
        if name in os.environ:
            env[name] = os.environ[name]
    out = subprocess.run(["pipx", "install", str(wheel)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    meshctl = str(tmp_path / "bin" / "meshctl")
    assert Path(meshctl).exists()

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([meshctl, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=home)

    tag = unique_tag()
    try:
        up = run("lab", "up", "seed", "--tag", tag)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"bringing up lab 'seed' (tag {tag}" in up.stdout.splitlines()[0]
        status = run("lab", "status", "seed", "--tag", tag)
        assert status.returncode == 0, status.stdout + status.stderr
        blocks = node_blocks(status.stdout)
        assert set(blocks) == {"client", "gw1", "gw2", "upstream"}, status.stdout
        for node, lines in blocks.items():
            assert any(line.split()[0] == "babeld" and line.endswith("running") for line in lines), (node, lines)
        (daemon,) = [line for line in blocks["client"] if line.startswith("meshctl daemon")]
        assert "running" in daemon and "meshctl status --socket" in daemon, daemon
        socket_path = daemon.split("meshctl status --socket ", 1)[1].split()[0]
        deadline = time.monotonic() + 30
        while True:  # the installed daemon answers on its control socket
            answer = run("status", "--socket", socket_path, "--json")
            if answer.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["node"] == "client"
        babel = json.loads(run("lab", "status", "seed", "--tag", tag, "--json").stdout)["nodes"]["client"]["babel"]
        dump = run("topology", "dump", "--babel", babel, "--format", "netjson")
        assert dump.returncode == 0 and json.loads(dump.stdout)["type"] == "NetworkGraph", dump.stderr
    finally:
        down = run("lab", "down", "seed", "--tag", tag)
    assert down.returncode == 0 and "lab 'seed' is down" in down.stdout, down.stdout + down.stderr
    assert not os.path.exists(f"/run/meshctl/lab/{tag}")
