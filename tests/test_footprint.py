"""The daemon loads only what its config uses, and the bench's floor lists exactly that.

Each case builds a daemon from a config in a fresh interpreter and looks at what got imported:
pyroute2 only for a gateway (routes) or [links] (netdevs), prometheus_client only with metrics,
cryptography only with keys to use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.footprint_bench import libraries
from meshctl.gossip.signing import SigningKey, write_signing_key
from meshctl.wireguard.keys import KeyPair, write_private_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRYPTO = "cryptography.hazmat.backends.openssl"  # an X25519 key in use loads it
WATCHED = ("pyroute2", "prometheus_client", "cryptography", CRYPTO, "asyncio_dgram", "networkx", "msgpack")
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
    ("kind", "metrics", "expected"),
    [
        ({"uplink": True}, "", {"asyncio_dgram", "networkx", "msgpack", "cryptography", CRYPTO}),
        ({"uplink": True, "gossip": True}, "[::1]:9474",
         {"asyncio_dgram", "networkx", "msgpack", "cryptography", CRYPTO, "prometheus_client"}),
        ({"gateway": True}, "", {"asyncio_dgram", "networkx", "msgpack", "cryptography", CRYPTO, "pyroute2"}),
        ({"gossip": True}, "", {"networkx", "msgpack", "cryptography"}),
    ],
)
def test_a_daemon_loads_what_its_config_uses_and_the_floor_says_so(
    tmp_path: Path, kind: dict, metrics: str, expected: set[str]
) -> None:
    config = write(tmp_path, **kind)
    out = subprocess.run([sys.executable, "-c", PROBE, config, metrics, json.dumps(WATCHED)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert set(json.loads(out.stdout)) == expected
    libs = libraries(config, metrics=bool(metrics))
    crypto = {"cryptography"} if any(lib.startswith("cryptography") for lib in libs) else set()
    assert {lib for lib in libs if lib in WATCHED} | crypto == expected
