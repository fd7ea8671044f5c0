"""The command line behaves like birdc, `wg show` and `tailscale status --json`: defaults from the node config,
--json wherever something is printed, help that says what a command does, a man page and completions
generated from the parser, and root checks before any output."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl import cli, shipped
from meshctl.cli import build_parser, format_lab_status, main

ROOT = Path(__file__).resolve().parent.parent
DUMP = (ROOT / "babel" / "captured" / "babeld-1.12.1-dump.txt").read_bytes()


Command = tuple[tuple[str, ...], argparse.ArgumentParser]


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every runnable command: (words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaves(sub, (*prefix, name))


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_command_that_prints_takes_json() -> None:
    commands = dict(leaves(build_parser()))
    assert ("status",) in commands and ("topology", "dump") in commands
    without = [words for words, p in commands.items() if "--json" not in options(p)]
    assert without == [("completion",)]  # prints a shell script, nothing to put in JSON


def test_every_command_says_what_it_does() -> None:
    for words, parser in leaves(build_parser()):
        assert parser.description and len(parser.description) > 30, words
    out = subprocess.run([sys.executable, "-m", "meshctl.cli", "status", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "Ask the running daemon" in out.stdout and "control socket" in out.stdout


# --- defaults from /etc/meshctl/node.toml ------------------------------------------------------------


class FakeBabeld:
    """babeld's local interface on a unix socket: the banner, then the captured dump for `dump`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen()
        self.srv.settimeout(0.2)
        self.served = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        banner, _, table = DUMP.partition(b"ok\n")
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            with conn, conn.makefile("rb") as reader:
                conn.sendall(banner + b"ok\n")
                for line in reader:
                    if line.strip() == b"dump":
                        self.served += 1  # before the answer: the client may read it and be done first
                        conn.sendall(table)
                    elif line.strip() == b"quit":
                        break

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.srv.close()


class FakeDaemon:
    """A control socket answering every request with one canned JSON object."""

    def __init__(self, path: str, answer: dict) -> None:
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen()
        self.srv.settimeout(0.2)
        self.answer = json.dumps(answer).encode() + b"\n"
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            with conn:
                self.requests.append(conn.recv(100).decode().strip())
                conn.sendall(self.answer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.srv.close()


@pytest.fixture
def node_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A node config in the place of /etc/meshctl/node.toml, whose key files do not even exist."""
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "r1"\nbabel = "unix:{tmp_path / "babel.sock"}"\n'
                    f'control_socket = "{tmp_path / "meshctl.sock"}"\n\n'
                    '[[uplink]]\ninterface = "wg-up"\nprivate_key_file = "/nonexistent/wg-up.key"\n')
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(path))
    yield path


def test_topology_dump_asks_the_babeld_of_the_node_config(node_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    babeld = FakeBabeld(str(node_config.parent / "babel.sock"))
    try:
        assert main(["topology", "dump", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["router_id"] == "02:6d:63:6c:00:00:00:01" and babeld.served == 1
        assert main(["topology", "dump", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == doc  # --json is --format json
    finally:
        babeld.close()


def test_json_and_another_format_disagree(node_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "dump", "--json", "--format", "dot"]) == 2
    assert "--json" in capsys.readouterr().err
    assert main(["topology", "render", "--json"]) == 2  # the image goes to stdout: nothing to describe
    assert "-o FILE" in capsys.readouterr().err


def test_status_asks_the_control_socket_of_the_node_config(node_config: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    daemon = FakeDaemon(str(tmp_path / "meshctl.sock"), {"node": "r1", "answer": "from the config's socket"})
    try:
        assert main(["status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == "from the config's socket"
        assert daemon.requests == ["status"]
    finally:
        daemon.close()
    other = FakeDaemon(str(tmp_path / "other.sock"), {"node": "r1", "answer": "from --socket"})
    try:  # the command line wins over the config
        assert main(["status", "--json", "--socket", str(tmp_path / "other.sock")]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == "from --socket"
    finally:
        other.close()


def test_without_a_node_config_the_defaults_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setattr(cli, "DEFAULT_CONTROL_SOCKET", str(tmp_path / "default.sock"))
    assert main(["status"]) == 1
    assert f"no meshctl daemon answering at {tmp_path / 'default.sock'}" in capsys.readouterr().err


def test_a_broken_node_config_names_its_line(node_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node_config.write_text('[node]\nname = "r1"\nbabel = "tcp: 41001"\n')
    assert main(["topology", "dump"]) == 2
    assert f"{node_config}:3: node.babel: bad port" in capsys.readouterr().err


# --- the lab -----------------------------------------------------------------------------------------


def test_lab_status_lists_each_nodes_daemons() -> None:
    status = {
        "name": "seed", "tag": "t1", "status": "up",
        "nodes": {"client": {"namespace": "t1-client", "mesh4": "10.99.0.1", "babel": "unix:/run/x/babel.sock"},
                  "gw1": {"namespace": "t1-gw1", "mesh4": "10.99.0.2", "babel": "unix:/run/y/babel.sock"}},
        "processes": [
            {"pid": 10, "node": "client", "what": "babeld", "alive": True},
            {"pid": 11, "node": "client", "what": "wireguard-go t1u1", "alive": True},
            {"pid": 12, "node": "client", "what": "meshctl daemon", "alive": True},
            {"pid": 20, "node": "gw1", "what": "babeld", "alive": False},
        ],
    }
    text = format_lab_status(status, {"client": "/run/x/meshctl.sock"})
    client, gw1 = text.split("\n  gw1")
    assert "babeld" in client and "wireguard-go t1u1" in client and "pid 12" in client
    assert "meshctl status --socket /run/x/meshctl.sock" in client
    assert "babeld" in gw1 and "DEAD" in gw1 and "DEAD: babeld on gw1 (pid 20)" in text


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                          "meshctl.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if "Error" in out.stderr and "meshctl" not in out.stderr:
        pytest.skip(f"this Python cannot run as nobody here: {out.stderr.strip().splitlines()[-1]}")
    return out


@pytest.mark.parametrize("command", ["up", "status", "down"])
def test_lab_commands_refuse_non_root_before_any_output(command: str) -> None:
    out = as_nobody("lab", command, "seed", "--tag", "nobody")  # a shipped topology, by name
    assert out.returncode == 4, out.stderr
    assert out.stdout == "" and "run it as root" in out.stderr and len(out.stderr.splitlines()) == 1


# --- man page and completions ------------------------------------------------------------------------


def test_man_page_and_completions_are_generated_from_this_parser() -> None:
    from meshctl.manuals import generated

    for parts, text in generated().items():
        shipped_text = (ROOT.joinpath(*parts)).read_text()
        assert shipped_text == text, f"{'/'.join(parts)} is stale: run `make manuals`"


def test_completion_command_prints_the_shipped_script(capsys: pytest.CaptureFixture[str]) -> None:
    for shell in cli.SHELLS:
        assert main(["completion", shell]) == 0
        assert capsys.readouterr().out == shipped.completion(shell).read_text()


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = shipped.completion("bash")
    probe = (f"source {script}\n"
             "COMP_WORDS=(meshctl sta); COMP_CWORD=1; _shtab_meshctl; echo \"${COMPREPLY[@]}\"\n"
             "COMP_WORDS=(meshctl status --js); COMP_CWORD=2; _shtab_meshctl; echo \"${COMPREPLY[@]}\"\n")
    out = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["status", "--json"]


def test_man_page_renders_and_names_every_command() -> None:
    page = shipped.shipped(*shipped.MANPAGE)
    assert page is not None
    text = page.read_text()
    for words, _ in leaves(build_parser()):
        assert f"meshctl {' '.join(words)}".replace("-", r"\-") in text, words
    if shutil.which("groff") is None:
        pytest.skip("no groff to render it")
    out = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and out.stderr == "", out.stderr
