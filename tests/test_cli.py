"""The command line's error paths: one clear line on stderr, meaningful exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from meshctl.babel.endpoint import parse_endpoint
from meshctl.babel.errors import BabelError


def meshctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_help_lists_commands() -> None:
    out = meshctl("--help")
    assert out.returncode == 0
    for word in ("topology", "lab", "Exit codes"):
        assert word in out.stdout


def test_dump_when_nothing_listens() -> None:
    out = meshctl("topology", "dump", "--babel", f"tcp:[::1]:{free_port()}")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0].lower(), out.stderr


def test_dump_when_the_peer_speaks_garbage() -> None:
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nnot babel at all\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = meshctl("topology", "dump", "--babel", f"tcp:[::1]:{port}", "--timeout", "3")
    finally:
        srv.close()
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert "babeld at tcp:[::1]" in out.stderr


def test_bad_address_is_a_usage_error() -> None:
    out = meshctl("topology", "dump", "--babel", "tcp:[::1]:99999")
    assert out.returncode == 2 and "bad port" in out.stderr


def test_unknown_format_is_refused_by_argparse() -> None:
    out = meshctl("topology", "dump", "--format", "yaml")
    assert out.returncode == 2


def test_lab_with_a_broken_topology_names_the_field(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "t.toml"
    path.write_text('[lab]\nname = "t"\n[[node]]\nname = "a"\n[[link]]\nnodes = ["a", "b"]\n')
    out = meshctl("lab", "up", str(path))
    assert out.returncode == 2
    assert "link[0].nodes" in out.stderr and "unknown node 'b'" in out.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp:[::1]:33123", ("tcp", "::1", 33123)),
        ("tcp:127.0.0.1:999", ("tcp", "127.0.0.1", 999)),
        ("tcp:4000", ("tcp", "::1", 4000)),
        ("unix:/run/babel.sock", ("unix", "::1", 33123)),
        ("/run/babel.sock", ("unix", "::1", 33123)),
    ],
)
def test_endpoint_forms(text: str, expected: tuple) -> None:
    e = parse_endpoint(text)
    assert (e.scheme, e.host, e.port) == expected


@pytest.mark.parametrize("text", ["udp:1", "tcp:", "tcp:[::1]", "tcp:[192.0.2.1]:33123", "tcp:example.org:1", "x"])
def test_endpoint_refusals(text: str) -> None:
    with pytest.raises(BabelError):
        parse_endpoint(text)


def test_daemon_refuses_a_broken_config_before_touching_anything(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "x"\n[[uplink]]\ninterface = "wg-up"\nsteer = "0.0.0.0/0"\n')
    out = meshctl("daemon", "--config", str(path))
    assert out.returncode == 2
    assert "uplink[0].steer" in out.stderr and "uplink[0].private_key_file" in out.stderr
    assert not (tmp_path / "meshctl.sock").exists()


def test_status_without_a_daemon() -> None:
    out = meshctl("status", "--socket", "/nonexistent/meshctl.sock")
    assert out.returncode == 1 and "no meshctl daemon answering" in out.stderr


def test_lab_up_refuses_when_not_root() -> None:
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    topo = os.path.join(os.path.dirname(__file__), "..", "topologies", "seed.toml")
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "meshctl.cli",
         "lab", "up", os.path.abspath(topo), "--tag", "nobody"],
        capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if "Error" in out.stderr and "meshctl:" not in out.stderr:
        pytest.skip(f"this Python cannot run as nobody here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 4, out.stderr
    assert "run it as root" in out.stderr
