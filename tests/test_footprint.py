"""The daemon loads only what its config uses, and the bench's floor lists exactly that.

Each case builds a daemon from a config in a fresh interpreter and looks at what got imported:
pyroute2 only for a gateway (routes) or [links] (netdevs), prometheus_client only with metrics,
PyNaCl only with keys to use (never cryptography), networkx only with gossip (the model builds its graph only when
asked for one).  meshctl's own section types, the gossip table and the uplink control codec are
loaded with the roles that use them: each frozen dataclass costs about 0.5 ms to build at start.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.footprint_bench import libraries
from meshctl.gossip.signing import SigningKey, write_signing_key
from meshctl.wireguard.keys import KeyPair, write_private_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X25519 = "nacl.bindings"  # libsodium: a WireGuard key in use loads it
ED25519 = "nacl.signing"  # gossip's keys (with the bindings)
WATCHED = ("pyroute2", "prometheus_client", "cryptography", X25519, ED25519, "asyncio_dgram", "networkx", "msgpack")
UPLINK = "meshctl.uplink.client_config"
GATEWAY = "meshctl.uplink.gateway_config"
LINKS = "meshctl.links.config"
TABLE = "meshctl.gossip.table"
CONTROL = ("meshctl.uplink.control", "meshctl.wireguard.state")  # the uplink plane's codec and device state
OWN = (UPLINK, GATEWAY, LINKS, TABLE, "meshctl.node.meshmap", *CONTROL)
PROBE = """
import json, sys
from meshctl.config import load_config
from meshctl.node.daemon import Daemon
Daemon(load_config(sys.argv[1]), metrics=sys.argv[2] or None)
print(json.dumps(sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)))
"""


def write(tmp_path: Path, *, uplink: bool = False, gateway: bool = False, gossip: bool = False) -> str:
    gw_key, up_key, other = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    write_private_key(str(tmp_path / "gw.key"), gw_key)
    write_private_key(str(tmp_path / "up.key"), up_key)
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    body = f'[node]\nname = "n"\nbabel = "unix:{tmp_path}/babel.sock"\ncontrol_socket = "{tmp_path}/c.sock"\n'
    if uplink:
        body += (f'[[uplink]]\ninterface = "wgup"\nprivate_key_file = "{tmp_path}/up.key"\naddress = "10.98.0.1/32"\n'
                 f'steer = ["10.200.0.0/24"]\nsecret_file = "{secret}"\n[[uplink.gateway]]\nname = "gw1"\n'
                 f'public_key = "{other.public}"\nendpoint = "10.0.0.1:51900"\ncontrol = "10.97.0.2"\n'
                 f'mesh = "10.99.0.2/32"\n')
    if gateway:
        body += (f'[gateway]\ninterface = "wggw"\nprivate_key_file = "{tmp_path}/gw.key"\naddress = "10.97.0.2/32"\n'
                 f'secret_file = "{secret}"\n[[gateway.client]]\nname = "c"\npublic_key = "{other.public}"\n'
                 f'addresses = ["10.98.0.1/32"]\n')
    if gossip:
        signing = SigningKey.generate()
        write_signing_key(str(tmp_path / "g.key"), signing)
        body += (f'[gossip]\nprivate_key_file = "{tmp_path}/g.key"\n[[gossip.trust]]\nname = "n"\n'
                 f'public_key = "{signing.public}"\n')
    path = tmp_path / "node.toml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "metrics", "expected", "own"),
    [
        ({"uplink": True}, "", {"asyncio_dgram", "msgpack", X25519}, {UPLINK, *CONTROL}),
        ({"uplink": True, "gossip": True}, "[::1]:9474",
         {"asyncio_dgram", "networkx", "msgpack", X25519, ED25519, "prometheus_client"},
         {UPLINK, TABLE, "meshctl.node.meshmap", *CONTROL}),
        ({"gateway": True}, "", {"asyncio_dgram", "msgpack", X25519, "pyroute2"}, {GATEWAY, *CONTROL}),
        ({"gossip": True}, "", {"networkx", "msgpack", X25519, ED25519}, {TABLE, "meshctl.node.meshmap"}),
        ({"gossip": True}, "[::1]:9474", {"networkx", "msgpack", X25519, ED25519, "prometheus_client"},
         {TABLE, "meshctl.node.meshmap"}),
    ],
)
def test_a_daemon_loads_what_its_config_uses_and_the_floor_says_so(
    tmp_path: Path, kind: dict, metrics: str, expected: set[str], own: set[str]
) -> None:
    config = write(tmp_path, **kind)
    out = subprocess.run([sys.executable, "-c", PROBE, config, metrics, json.dumps(WATCHED + OWN)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert loaded & set(WATCHED) == expected
    assert loaded & set(OWN) == own
    libs = libraries(config, metrics=bool(metrics))
    assert {lib for lib in libs if lib in WATCHED} == expected


def test_section_types_load_with_their_section_and_stay_importable_from_config() -> None:
    probe = """
import json, sys
import meshctl.config as config
before = sorted(m for m in sys.modules if m.endswith("_config") or m == "meshctl.links.config")
from meshctl.config import ClientEntry, GatewayCandidate, GatewayConfig, LinksConfig, NeighbourConfig, PathConfig, UplinkConfig
try:
    config.NoSuchThing
    missing = "no error"
except AttributeError as exc:
    missing = str(exc)
print(json.dumps([before, [c.__module__ for c in (GatewayCandidate, UplinkConfig, ClientEntry, GatewayConfig, PathConfig,
                                                  NeighbourConfig, LinksConfig)], missing]))
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    before, modules, missing = json.loads(out.stdout)
    assert before == []
    assert modules == [UPLINK, UPLINK, GATEWAY, GATEWAY, LINKS, LINKS, LINKS]
    assert missing == "module 'meshctl.config' has no attribute 'NoSuchThing'"


def test_without_gossip_the_mesh_map_loads_the_gossip_table_when_asked_for(tmp_path: Path) -> None:
    probe = """
import json, sys
from meshctl.config import load_config
from meshctl.node.daemon import Daemon
daemon = Daemon(load_config(sys.argv[1]))
before = "meshctl.gossip.table" in sys.modules
doc = daemon.mesh()
print(json.dumps([before, "meshctl.gossip.table" in sys.modules, doc["schema"]]))
"""
    out = subprocess.run([sys.executable, "-c", probe, write(tmp_path, uplink=True)], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == [False, True, "meshctl.mesh/1"]


def test_the_cli_spells_out_the_dump_formats_of_the_exporters() -> None:
    """The parser lists them without loading the exporters, which a daemon does not need."""
    from meshctl.cli import DUMP_FORMATS
    from meshctl.topology.export import FORMATS

    assert DUMP_FORMATS == FORMATS


# Words a daemon's command line is made of, and some it is not.
WORDS = ["daemon", "-v", "-vv", "--verbose", "--log-format", "--log-format=json", "--log-format=text", "json", "text",
         "xml", "--config", "--config=a.toml", "--config=", "a.toml", "--metrics", "--metrics=[::1]:9474", "[::1]:9474",
         "--json", "--json=1", "-h", "--help", "--conf", "--version", "--", "-1", "", "status", "-x", "-vx"]


def _parsed(argv: list[str]) -> dict | None:
    """What the real parser makes of ``argv`` (None where it refuses it or only prints something)."""
    from meshctl.cli import build_parser

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return vars(build_parser().parse_args(argv))
        except SystemExit:
            return None


@pytest.mark.parametrize("argv", [
    ["daemon"],
    ["daemon", "--config", "/etc/meshctl/node.toml"],
    ["-v", "daemon", "--config=n.toml", "--metrics", "[::1]:9474", "--json"],
    ["-vv", "--verbose", "--log-format", "json", "daemon", "--json", "--config", "n.toml", "--config", "m.toml"],
    ["--log-format=text", "daemon", "--metrics=127.0.0.1:9474", "--config="],
])
def test_the_daemons_command_line_is_read_without_argparse_as_argparse_reads_it(argv: list[str]) -> None:
    from meshctl.node.command import daemon_command_line

    fast = daemon_command_line(argv)
    assert fast is not None
    assert vars(fast) == _parsed(argv)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_any_other_command_line_goes_to_argparse(argv: list[str]) -> None:
    from meshctl.node.command import daemon_command_line

    fast = daemon_command_line(argv)
    assert fast is None or vars(fast) == _parsed(argv)


def test_a_daemon_starts_without_argparse_or_the_rest_of_the_cli() -> None:
    """argparse and gettext are 0.4 MB, the CLI's own code 0.1 MB, that a router's daemon would keep for nothing."""
    probe = """
import json, sys
import meshctl.__main__ as entry
from meshctl.node import command
loaded = ("argparse", "gettext", "meshctl.cli")
command.cmd_daemon = lambda args: print(json.dumps([args.command, sorted(m for m in loaded if m in sys.modules)])) or 0
sys.exit(entry.main(["-v", "daemon", "--config", "n.toml"]))
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["daemon", []]


def test_any_other_command_line_goes_to_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "meshctl", "daemon", "--conf", "/nonexistent/n.toml"], cwd=ROOT,
                         capture_output=True, text=True)  # an abbreviation: argparse's, as before
    assert (out.returncode, out.stderr) == (2, "meshctl: /nonexistent/n.toml: no such file\n")
    out = subprocess.run([sys.executable, "-m", "meshctl", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "meshctl 0.1.0\n")


def test_the_toml_parser_is_let_go_after_a_read_and_loaded_again_for_the_next(tmp_path: Path) -> None:
    """The daemon reads its config at start and on SIGHUP; tomllib is 0.1 MB it would keep for nothing."""
    probe = """
import json, sys
from meshctl.tomlfile import forget_parser, load_toml
first = load_toml(sys.argv[1])
forget_parser()
gone = not any(m == "tomllib" or m.startswith("tomllib.") for m in sys.modules)
print(json.dumps([first, gone, load_toml(sys.argv[1])]))
"""
    path = tmp_path / "a.toml"
    path.write_text('[node]\nname = "n"\n')
    out = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [{"node": {"name": "n"}}, True, {"node": {"name": "n"}}]
