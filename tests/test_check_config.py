"""``meshctl check-config`` on broken files: every problem with its field and line, nothing touched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from meshctl.cli import main
from meshctl.gossip.signing import SigningKey, read_signing_key
from meshctl.tomlfile import field_lines, locate
from meshctl.wireguard.keys import KeyPair, write_private_key

GW1, GW2, CLIENT = (KeyPair.generate() for _ in range(3))


def write_config(tmp_path: Path, body: str) -> Path:
    key = tmp_path / "up.key"
    if not key.exists():
        write_private_key(str(key), CLIENT)
    secret = tmp_path / "secret"
    if not secret.exists():
        secret.write_text("s" * 32)
        secret.chmod(0o600)
    path = tmp_path / "node.toml"
    path.write_text(body.format(key=key, secret=secret, gw1=GW1.public, gw2=GW2.public))
    return path


GOOD = """\
[node]
name = "client"
babel = "unix:/run/b.sock"

[[uplink]]
interface = "wgup"
private_key_file = "{key}"
address = "10.98.0.1/32"
steer = ["10.200.0.0/24"]
secret_file = "{secret}"

[[uplink.gateway]]
name = "gw1"
public_key = "{gw1}"
endpoint = "10.0.0.1:51900"
control = "10.97.0.2"
mesh = "10.99.0.2/32"

[[uplink.gateway]]
name = "gw2"
public_key = "{gw2}"
endpoint = "10.0.0.5:51900"
control = "10.97.0.3"
mesh = "10.99.0.3/32"
"""


def check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["check-config", str(path), *extra])
    return code, capsys.readouterr().out


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(write_config(tmp_path, GOOD), capsys)
    assert code == 0 and "ok (node client, 1 uplink(s)" in out


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "message"),
    [
        # wrong types
        ('steer = ["10.200.0.0/24"]', 'steer = "10.200.0.0/24"', "uplink[0].steer", "steer =", "must be list"),
        ('name = "gw2"', "name = 2", "uplink[0].gateway[1].name", "name = 2", "must be str"),
        ('babel = "unix:/run/b.sock"', "babel = true", "node.babel", "babel = true", "must be str"),
        # unknown keys
        ('control = "10.97.0.3"', 'control = "10.97.0.3"\ncolour = 1', "uplink[0].gateway[1].colour", "colour", "unknown key"),
        ('name = "client"', 'name = "client"\nbable = "x"', "node.bable", "bable", "unknown key"),
        # missing fields
        ('address = "10.98.0.1/32"\n', "", "uplink[0].address", "[[uplink]]", "missing"),
        ('endpoint = "10.0.0.1:51900"\n', "", "uplink[0].gateway[0].endpoint", "[[uplink.gateway]]", "missing"),
        # bad keys
        ('public_key = "{gw2}"', 'public_key = "AAAA"', "uplink[0].gateway[1].public_key", "AAAA", "32 bytes"),
        ('public_key = "{gw2}"', 'public_key = "{gw1}"', "uplink[0].gateway", "[[uplink]]", "own key"),
        # duplicate prefixes
        ('steer = ["10.200.0.0/24"]', 'steer = ["10.200.0.0/24", "10.200.0.0/24"]', "uplink[0].steer", "steer =", "duplicate"),
        # addresses that are not
        ('mesh = "10.99.0.3/32"', 'mesh = "10.99.0.3/33"', "uplink[0].gateway[1].mesh", "/33", "not a prefix"),
        ('endpoint = "10.0.0.5:51900"', 'endpoint = "gw2.example.org:51900"', "uplink[0].gateway[1].endpoint",
         "example.org", "ADDRESS:PORT"),
    ],
)
def test_each_problem_names_its_field_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str, needle: str, message: str
) -> None:
    assert old in GOOD
    body = GOOD.replace(old, new)
    path = write_config(tmp_path, body)
    code, out = check(path, capsys)
    assert code == 2, out
    text = path.read_text()
    expected = f"{path}:{line_of(text, needle.format(gw1=GW1.public))}: {field}: "
    assert any(line.startswith(expected) and message in line for line in out.splitlines()), out
    assert "nothing was touched" in out


def test_world_readable_private_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, GOOD)
    os.chmod(tmp_path / "up.key", 0o644)
    code, out = check(path, capsys)
    assert code == 2
    assert "uplink[0].private_key_file: private key file is accessible by group/others (mode 0644)" in out
    assert CLIENT.private not in out


def test_every_problem_is_listed_and_json_says_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = GOOD.replace('name = "client"', "name = 1").replace('mesh = "10.99.0.2/32"', 'mesh = "x"')
    body += '\n[metrics]\nlisten = "[::1]:9474"\n'
    path = write_config(tmp_path, body)
    code, out = check(path, capsys, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    got = {(p["field"], p["line"]) for p in report["problems"]}
    text = path.read_text()
    assert ("node.name", line_of(text, "name = 1")) in got
    assert ("uplink[0].gateway[0].mesh", line_of(text, 'mesh = "x"')) in got
    assert ("metrics", line_of(text, "[metrics]")) in got


def test_toml_syntax_error_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, GOOD.replace('interface = "wgup"', 'interface = "wgup'))
    code, out = check(path, capsys)
    assert code == 2
    assert f"{path}:{line_of(path.read_text(), 'interface =')}: not valid TOML" in out


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path / "nope.toml", capsys)
    assert code == 2 and "no such file" in out


def test_metrics_address_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, GOOD.replace('babel = "unix:/run/b.sock"', 'babel = "unix:/run/b.sock"\nmetrics = "::1:9474"'))
    code, out = check(path, capsys)
    assert code == 2 and f"{path}:4: node.metrics: must be ADDRESS:PORT or [IPV6]:PORT" in out


def test_line_locator_follows_nested_arrays_of_tables() -> None:
    text = '[node]\nname = "a"\n[[uplink]]\n[[uplink.gateway]]\nname = "g0"\n[[uplink]]\n[[uplink.gateway]]\n' \
           '[[uplink.gateway]]\npublic_key = "k"\n[uplink.hysteresis]\nhold = 1\n'
    lines = field_lines(text)
    assert locate("uplink[1].gateway[1].public_key", lines) == 9
    assert locate("uplink[0].gateway[0].name", lines) == 5
    assert locate("uplink[1].hysteresis.hold", lines) == 11
    assert locate("uplink[1].gateway[0].endpoint", lines) == 7  # missing: its table's line
    assert locate("uplink[0].steer[3]", lines) == 3
    assert locate("nowhere", lines) is None


def gossip_config(tmp_path: Path, trust: str) -> Path:
    from meshctl.gossip.signing import SigningKey, write_signing_key

    key = tmp_path / "gossip.key"
    write_signing_key(str(key), SigningKey.generate())
    other = SigningKey.generate().public
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "r1"\n\n[gossip]\nprivate_key_file = "{key}"\nlifetime = 30\n'
                    + trust.format(other=other))
    return path


def test_a_gossip_only_node_is_something_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = gossip_config(tmp_path, '\n[[gossip.trust]]\nname = "r2"\npublic_key = "{other}"\n')
    code, out = check(path, capsys)
    assert code == 0, out


def test_the_gossip_public_key_is_printed_for_the_trust_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The key file as the README makes it: 32 random bytes in base64 (any 32 bytes are an Ed25519 seed).
    key = tmp_path / "gossip.key"
    subprocess.run(f"umask 077; head -c 32 /dev/urandom | base64 > {key}", shell=True, check=True)
    path = tmp_path / "node.toml"
    body = f'[node]\nname = "r1"\n\n[gossip]\nprivate_key_file = "{key}"\n\n[[gossip.trust]]\nname = "r2"\npublic_key = "{{}}"\n'
    path.write_text(body.format(SigningKey.generate().public))
    code, out = check(path, capsys)
    public = read_signing_key(str(key), "gossip.private_key_file").public
    assert code == 0 and f"gossip public key of r1: {public} (not yet in [[gossip.trust]]" in out, out
    path.write_text(body.format(SigningKey.generate().public) + f'\n[[gossip.trust]]\nname = "r1"\npublic_key = "{public}"\n')
    code, out = check(path, capsys)
    assert code == 0 and out.splitlines()[-1].endswith(f"gossip public key of r1: {public}"), out
    code, out = check(path, capsys, "--json")
    assert json.loads(out)["gossip_public_key"] == public


@pytest.mark.parametrize(
    ("trust", "field", "message"),
    [
        ('\n[[gossip.trust]]\nname = "r2"\npublic_key = "AAAA"\n', "gossip.trust[0].public_key", "32 bytes"),
        ('\n[[gossip.trust]]\nname = "r2"\npublic_key = "{other}"\n[[gossip.trust]]\nname = "r2"\npublic_key = "{other}"\n',
         "gossip.trust[1].name", "trusted twice"),
        ("", "gossip.trust", "missing"),
        ('lifetime2 = 3\n[[gossip.trust]]\nname = "r2"\npublic_key = "{other}"\n', "gossip.lifetime2", "unknown key"),
    ],
)
def test_gossip_problems_name_their_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trust: str, field: str, message: str
) -> None:
    code, out = check(gossip_config(tmp_path, trust), capsys)
    assert code == 2 and any(f": {field}: " in line and message in line for line in out.splitlines()), out


def test_world_readable_signing_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = gossip_config(tmp_path, '\n[[gossip.trust]]\nname = "r2"\npublic_key = "{other}"\n')
    os.chmod(tmp_path / "gossip.key", 0o640)
    code, out = check(path, capsys)
    assert code == 2 and "gossip.private_key_file: signing key file is accessible by group/others" in out


def links_config(tmp_path: Path, neighbours: str, extra: str = "") -> Path:
    key = tmp_path / "links.key"
    write_private_key(str(key), CLIENT)
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "a"\n\n[links]\nprivate_key_file = "{key}"\n{extra}\n'
                    + neighbours.format(gw1=GW1.public, gw2=GW2.public))
    return path


NEIGHBOUR = '[[links.neighbour]]\nname = "{name}"\npublic_key = "{{{key}}}"\nendpoints = {endpoints}\nlisten_port = {port}\n'


def test_a_links_only_node_is_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = links_config(tmp_path, NEIGHBOUR.format(name="b", key="gw1", endpoints='["10.0.0.2:52001", "[fd00::2]:52001"]',
                                                   port=52002))
    assert check(path, capsys)[0] == 0


@pytest.mark.parametrize(
    ("neighbours", "extra", "field", "message"),
    [
        (NEIGHBOUR.format(name="b", key="gw1", endpoints='["b.example:1"]', port=52002), "",
         "links.neighbour[0].endpoints[0]", "ADDRESS:PORT"),
        (NEIGHBOUR.format(name="b", key="gw1", endpoints='["10.0.0.2:1"]', port=52002)
         + NEIGHBOUR.format(name="c", key="gw2", endpoints='["10.0.0.3:1"]', port=52002), "",
         "links.neighbour", "share a listen_port"),
        ('[[links.neighbour]]\nname = "b"\npublic_key = "{gw1}"\nendpoints = ["10.0.0.2:1"]\n', "",
         "links.neighbour[0].listen_port", "missing"),
        (NEIGHBOUR.format(name="b", key="gw1", endpoints='["10.0.0.2:1"]', port=52002), "keepalive = 10\ndead_after = 5",
         "links.dead_after", "longer than keepalive"),
    ],
)
def test_links_problems_name_their_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], neighbours: str, extra: str, field: str, message: str
) -> None:
    code, out = check(links_config(tmp_path, neighbours, extra), capsys)
    assert code == 2 and any(f": {field}: " in line and message in line for line in out.splitlines()), out
