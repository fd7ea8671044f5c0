"""Node config validation: every problem names its field; secrets must be private."""

from __future__ import annotations

import os

import pytest

from meshctl.config import load_config, parse_config
from meshctl.errors import ConfigError
from meshctl.wireguard.keys import KeyPair, write_private_key

GW1, GW2, CLIENT = (KeyPair.generate() for _ in range(3))


@pytest.fixture
def files(tmp_path) -> dict:  # noqa: ANN001
    key = tmp_path / "up.key"
    write_private_key(str(key), CLIENT)
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    return {"key": str(key), "secret": str(secret)}


def good(files: dict) -> dict:
    return {
        "node": {"name": "client", "babel": "unix:/run/b.sock", "control_socket": "/tmp/x.sock"},
        "uplink": [
            {
                "interface": "wgup",
                "private_key_file": files["key"],
                "address": "10.98.0.1/32",
                "steer": ["0.0.0.0/0"],
                "secret_file": files["secret"],
                "gateway": [
                    {"name": "gw1", "public_key": GW1.public, "endpoint": "10.0.0.1:51901", "control": "10.97.0.2",
                     "mesh": "10.99.0.2/32"},
                    {"name": "gw2", "public_key": GW2.public, "endpoint": "[fd00::1]:51901", "control": "10.97.0.3",
                     "router_id": "02:00:00:00:00:00:00:03"},
                ],
            }
        ],
    }


def test_good_config(files: dict) -> None:
    config = parse_config(good(files), "node.toml")
    up = config.uplinks[0]
    assert [g.name for g in up.gateways] == ["gw1", "gw2"]
    assert up.keys.public == CLIENT.public
    assert up.hysteresis.margin == 32 and up.probe_interval == 0.1


def test_babeld_is_read_on_the_probe_beat_of_a_client_and_as_it_comes_elsewhere(files: dict) -> None:
    assert parse_config(good(files), "node.toml").babel_read_pace() == (0.1, 0.01)  # answers read 10 ms in
    assert parse_config(mutate(files, "node.babel_pace", 0), "node.toml").babel_read_pace() == (0, 0.0)
    assert parse_config(mutate(files, "node.babel_pace", 0.05), "node.toml").babel_read_pace() == (0.05, 0.0)
    slow = mutate(files, "uplink.0.probe_interval", 1.0)  # a beat too slow for babeld: read as it comes
    assert parse_config(slow, "node.toml").babel_read_pace() == (0.0, 0.0)


def mutate(files: dict, path: str, value: object) -> dict:
    data = good(files)
    target: object = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]  # type: ignore[index]
    if value is KeyError:
        del target[parts[-1]]  # type: ignore[union-attr]
    else:
        target[parts[-1]] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("node.name", KeyError, "node.name", "missing"),
        ("node.babel", "tcp:[192.0.2.1]:1", "node.babel", "loopback"),
        ("node.colour", "red", "node.colour", "unknown key"),
        ("node.babel_pace", 0.5, "node.babel_pace", "0..0.1 seconds"),
        ("uplink.0.interface", "a" * 16, "uplink[0].interface", "15 characters"),
        ("uplink.0.steer", ["0.0.0.0/0", "0.0.0.0/0"], "uplink[0].steer", "duplicate"),
        ("uplink.0.steer", ["10.0.0.1/8"], "uplink[0].steer[0]", "not a prefix"),
        ("uplink.0.keepalive", 90, "uplink[0].keepalive", "0..60"),
        ("uplink.0.keepalive", "10", "uplink[0].keepalive", "must be int"),
        ("uplink.0.probe_loss", 0, "uplink[0].probe_loss", "1..100"),
        ("uplink.0.hysteresis", {"hold": -1}, "uplink[0].hysteresis.hold", "0..3600"),
        ("uplink.0.hysteresis", {"warm_age": 200}, "uplink[0].hysteresis.warm_age", "180"),
        ("uplink.0.gateway.0.public_key", "nope", "uplink[0].gateway[0].public_key", "32 bytes"),
        ("uplink.0.gateway.0.public_key", "not base64!", "uplink[0].gateway[0].public_key", "base64"),
        ("uplink.0.gateway.0.endpoint", "gw1.example:51901", "uplink[0].gateway[0].endpoint", "ADDRESS:PORT"),
        ("uplink.0.gateway.0.control", "gw1", "uplink[0].gateway[0].control", "not an address"),
        ("uplink.0.gateway.0.mesh", KeyError, "uplink[0].gateway[0].mesh", "router_id"),
        ("uplink.0.gateway.1.public_key", GW1.public, "uplink[0].gateway", "own key"),
        ("uplink.0.gateway.1.name", "gw1", "uplink[0].gateway[1].name", "duplicate"),
        ("uplink.0.secret_file", "/nonexistent", "uplink[0].secret_file", "cannot read"),
        ("uplink.0.private_key_file", "/nonexistent", "uplink[0].private_key_file", "cannot read"),
    ],
)
def test_bad_configs_name_the_field(files: dict, path: str, value: object, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(mutate(files, path, value), "node.toml")
    fields = {p.field for p in info.value.problems}
    assert field in fields, (fields, str(info.value))
    assert message in str(info.value)


def test_world_readable_key_and_secret_are_refused(files: dict) -> None:
    os.chmod(files["key"], 0o644)
    os.chmod(files["secret"], 0o640)
    with pytest.raises(ConfigError) as info:
        parse_config(good(files), "node.toml")
    fields = {p.field for p in info.value.problems}
    assert {"uplink[0].private_key_file", "uplink[0].secret_file"} <= fields
    assert CLIENT.private not in str(info.value)


def test_gateway_clients_may_not_share_addresses(files: dict) -> None:
    data = {
        "node": {"name": "gw1"},
        "gateway": {
            "interface": "wggw",
            "private_key_file": files["key"],
            "address": "10.97.0.2/32",
            "secret_file": files["secret"],
            "client": [
                {"name": "a", "public_key": GW1.public, "addresses": ["10.98.0.1/32"]},
                {"name": "b", "public_key": GW2.public, "addresses": ["10.98.0.1/32"]},
            ],
        },
    }
    with pytest.raises(ConfigError, match="another client"):
        parse_config(data, "node.toml")


def test_nothing_to_do() -> None:
    with pytest.raises(ConfigError, match="nothing to do"):
        parse_config({"node": {"name": "x"}}, "node.toml")


def test_cli_check_config(tmp_path, files: dict) -> None:  # noqa: ANN001
    import subprocess
    import sys

    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "x"\nbabel = "udp:1"\n')
    out = subprocess.run([sys.executable, "-m", "meshctl.cli", "check-config", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{path}:3: node.babel" in out.stdout
    with pytest.raises(ConfigError):
        load_config(str(path))
