"""Bad config and command-line input (issue 12, item 6): one line naming the file, line or field, the documented
exit code, never a traceback, and nothing that is not meshctl's touched.

Everything runs ``meshctl`` as a separate process, as a user would: a traceback, a hang or a second line
would show there and nowhere else.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.gossip.signing import SigningKey, write_signing_key
from meshctl.wireguard.keys import KeyPair, write_private_key

GW1, GW2 = KeyPair.generate().public, KeyPair.generate().public


def meshctl(*args: str, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)  # type: ignore[call-overload]


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """stderr holds exactly one line, and no traceback."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def client_config(tmp: Path, node: str = "", hysteresis: str = "", key: Path | None = None,
                  secret: Path | None = None) -> Path:
    if key is None:
        key = tmp / "up.key"
        write_private_key(str(key), KeyPair.generate())
    if secret is None:
        secret = tmp / "secret"
        secret.write_text("s" * 32)
        secret.chmod(0o600)
    path = tmp / "node.toml"
    path.write_text(f"""\
[node]
name = "client"
babel = "unix:/run/b.sock"
control_socket = "{tmp / 'meshctl.sock'}"
{node}
[[uplink]]
interface = "wgup"
private_key_file = "{key}"
address = "10.98.0.1/32"
steer = ["0.0.0.0/0"]
secret_file = "{secret}"

[uplink.hysteresis]
{hysteresis}

[[uplink.gateway]]
name = "gw1"
public_key = "{GW1}"
endpoint = "192.0.2.1:51900"
control = "10.97.0.2"
mesh = "10.99.0.2/32"
""")
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- the node config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_control_socket_on_something_else_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "taken"
    if kind == "file":
        target.write_text("someone's data\n")
    else:
        target.mkdir()
    path = client_config(tmp_path)
    path.write_text(path.read_text().replace(str(tmp_path / "meshctl.sock"), str(target)))
    out = meshctl("check-config", str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    line = f"{path}:{line_of(path, 'control_socket')}: node.control_socket:"
    assert any(row.startswith(line) and "replaces only a stale socket" in row for row in out.stdout.splitlines()), out.stdout
    daemon = meshctl("daemon", "--config", str(path))
    assert daemon.returncode == 2 and "Traceback" not in daemon.stderr, daemon.stderr
    assert "node.control_socket" in daemon.stderr
    assert target.read_text() == "someone's data\n" if kind == "file" else target.is_dir()


def test_control_socket_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    path = client_config(tmp_path)
    path.write_text(path.read_text().replace(str(tmp_path / "meshctl.sock"), str(tmp_path / "plain" / "m.sock")))
    out = meshctl("check-config", str(path))
    assert out.returncode == 2 and "node.control_socket" in out.stdout and "is not a directory" in out.stdout


@pytest.mark.parametrize(
    ("hysteresis", "field", "message"),
    [
        ("hold = nan", "uplink[0].hysteresis.hold", "finite"),
        ("hold = inf", "uplink[0].hysteresis.hold", "finite"),
        ("hold = -inf", "uplink[0].hysteresis.hold", "finite"),
        ("hold = 1e300", "uplink[0].hysteresis.hold", "0..3600"),
        ("margin = 12345678901234567890", "uplink[0].hysteresis.margin", "0..65535"),
        ("warm_age = nan", "uplink[0].hysteresis.warm_age", "finite"),
    ],
)
def test_non_finite_and_huge_numbers_are_refused(tmp_path: Path, hysteresis: str, field: str, message: str) -> None:
    path = client_config(tmp_path, hysteresis=hysteresis)
    out = meshctl("check-config", str(path))
    assert out.returncode == 2, out.stdout
    where = f"{path}:{line_of(path, hysteresis)}: {field}: "
    assert any(row.startswith(where) and message in row for row in out.stdout.splitlines()), out.stdout


@pytest.mark.parametrize("which", ["private_key_file", "secret_file", "gossip"])
def test_a_key_file_that_is_a_fifo_does_not_hang(tmp_path: Path, which: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    if which == "gossip":
        path = tmp_path / "node.toml"
        path.write_text(f'[node]\nname = "r1"\ncontrol_socket = "{tmp_path / "m.sock"}"\n\n[gossip]\n'
                        f'private_key_file = "{fifo}"\n[[gossip.trust]]\nname = "r2"\n'
                        f'public_key = "{SigningKey.generate().public}"\n')
        field = "gossip.private_key_file"
    else:
        path = client_config(tmp_path, **{"key" if which == "private_key_file" else "secret": fifo})
        field = f"uplink[0].{which}"
    out = meshctl("check-config", str(path), timeout=20)  # a hang fails here
    assert out.returncode == 2, out.stdout
    assert any(f": {field}: " in row and "is a FIFO, not a regular file" in row for row in out.stdout.splitlines()), out.stdout


def test_a_config_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "node.toml"
    os.mkfifo(fifo, 0o600)
    out = meshctl("check-config", str(fifo), timeout=20)
    assert out.returncode == 2 and f"{fifo}: is a FIFO, not a regular file" in out.stdout


def test_non_utf8_config_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(b'[node]\nname = "caf\xe9"\n')
    out = meshctl("check-config", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{path}:2: not UTF-8 text (byte 0xe9 at column 12)" in out.stdout
    daemon = meshctl("daemon", "--config", str(path))
    assert daemon.returncode == 2 and f"{path}:2: not UTF-8" in one_line(daemon)


def test_non_utf8_topology_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(b'[lab]\nname = "t"\n# r\xf4le\n')
    out = meshctl("lab", "up", str(path))
    assert out.returncode == 2 and f"{path}:3: not UTF-8 text" in one_line(out)


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "0", "1e9"])
@pytest.mark.parametrize("command", [("topology", "dump"), ("topology", "render"), ("status",)])
def test_timeouts_must_be_finite_and_positive(command: tuple[str, ...], value: str) -> None:
    out = meshctl(*command, "--timeout", value, timeout=20)
    assert out.returncode == 2 and "--timeout" in one_line(out)


@pytest.mark.parametrize(
    "text", ["tcp: 41001", "tcp:+41001", "tcp:41_001", "tcp:[::1]: 41001", "tcp:[::1]:99999", "udp:1", "tcp:",
             "tcp:[192.0.2.1]:33123", "unix:", "unix: /run/babeld/babel.sock", " tcp:41001", "babeld"],
)
def test_bad_babel_addresses_are_usage_errors(text: str) -> None:
    out = meshctl("topology", "dump", "--babel", text)
    assert out.returncode == 2 and "--babel" in one_line(out), out.stderr
    assert out.stdout == ""


def test_bad_babel_address_in_the_config_names_the_field(tmp_path: Path) -> None:
    path = client_config(tmp_path)
    path.write_text(path.read_text().replace('babel = "unix:/run/b.sock"', 'babel = "tcp: 41001"'))
    out = meshctl("check-config", str(path))
    assert out.returncode == 2 and f"{path}:3: node.babel: bad port" in out.stdout


# --- a control socket that does not answer as the daemon does ----------------------------------------


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A unix socket at PATH that answers every request with the next of ``answers``."""
    path = str(tmp_path / "fake.sock")
    answers: list[bytes] = []
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                conn.recv(100)
                conn.sendall(answers.pop(0) if answers else b"")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, answers
    stop.set()
    t.join(2)
    srv.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.0 400 Bad Request\r\n\r\n", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]\n", "not an object"),
        (b'{"error": "unknown request"}\n', "refused 'status': unknown request"),
        (b'{"node": "x"}\n', "not what this meshctl understands"),
    ],
)
def test_status_from_something_that_is_not_the_daemon(fake_daemon: tuple[str, list[bytes]], answer: bytes,
                                                      message: str) -> None:
    path, answers = fake_daemon
    answers.append(answer)
    out = meshctl("status", "--socket", path)
    assert out.returncode == 1 and message in one_line(out)
    assert out.stdout == ""


def test_mesh_dump_from_something_that_is_not_the_daemon(fake_daemon: tuple[str, list[bytes]]) -> None:
    path, answers = fake_daemon
    answers.append(b'{"nodes": 3}\n')
    out = meshctl("topology", "dump", "--mesh", "--format", "netjson", "--socket", path)
    assert out.returncode == 1 and "not what this meshctl understands" in one_line(out)


# --- where the output goes ---------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`meshctl ... | head`: the reader is gone before meshctl writes; no traceback, no noise."""
    path = client_config(tmp_path, hysteresis="hold = nan")
    for args in (["completion", "bash"], ["check-config", str(path)], ["check-config", "--json", str(path)]):
        read, write = os.pipe()
        os.close(read)
        try:
            out = subprocess.run([sys.executable, "-m", "meshctl.cli", *args], stdout=write, stderr=subprocess.PIPE,
                                 text=True, timeout=30)
        finally:
            os.close(write)
        assert out.returncode == 1 and out.stderr == "", (args, out.stderr)


def test_a_full_disk_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "meshctl.cli", "completion", "zsh"], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=30)
    assert out.returncode == 1
    assert one_line(out) == "meshctl: cannot write to standard output: No space left on device"


def test_render_to_a_full_disk_names_the_file(fake_daemon: tuple[str, list[bytes]]) -> None:
    from meshctl.gossip.table import mesh_graph
    from meshctl.topology.export import mesh_json

    path, answers = fake_daemon
    answers.append(json.dumps(mesh_json(mesh_graph([]), "02:00:00:00:00:00:00:01", "r1")).encode())
    out = meshctl("topology", "render", "--mesh", "--socket", path, "-o", "/dev/full", "--format", "svg")
    assert out.returncode == 1 and one_line(out) == "meshctl: /dev/full: cannot write: No space left on device"


# --- one daemon per control socket -------------------------------------------------------------------


def gossip_only(tmp_path: Path) -> Path:
    key = tmp_path / "gossip.key"
    write_signing_key(str(key), SigningKey.generate())
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "r1"\nbabel = "unix:{tmp_path / "no-babeld.sock"}"\n'
                    f'control_socket = "{tmp_path / "meshctl.sock"}"\n\n'
                    f'[gossip]\nprivate_key_file = "{key}"\nport = {port}\n'
                    f'[[gossip.trust]]\nname = "r2"\npublic_key = "{SigningKey.generate().public}"\n')
    return path


def test_a_second_daemon_with_the_same_config_refuses(tmp_path: Path) -> None:
    path = gossip_only(tmp_path)
    sock = tmp_path / "meshctl.sock"
    first = subprocess.Popen([sys.executable, "-m", "meshctl", "daemon", "--config", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        second = meshctl("daemon", "--config", str(path))
        assert second.returncode == 1
        expected = f"meshctl: another meshctl daemon (pid {first.pid}) serves {sock}; one control socket, one daemon"
        assert one_line(second) == expected
        status = meshctl("status", "--socket", str(sock), "--json")  # the first still answers on its socket
        assert status.returncode == 0 and json.loads(status.stdout)["node"] == "r1"
    finally:
        first.terminate()
        first.wait(10)
    # the lock goes with the process: a new daemon may start at once
    third = subprocess.Popen([sys.executable, "-m", "meshctl", "daemon", "--config", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while meshctl("status", "--socket", str(sock)).returncode != 0:
            assert third.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        third.terminate()
        third.wait(10)
