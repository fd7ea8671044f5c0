"""The UAPI text codec, on a real wireguard-go reply."""

from __future__ import annotations

import ipaddress

import pytest

from meshctl.errors import ConfigError
from meshctl.wireguard.keys import (
    KeyPair,
    clamp,
    decode_key,
    encode_key,
    hex_to_key,
    key_to_hex,
    read_private_key,
    write_private_key,
)
from meshctl.wireguard.uapi import SetPeer, SetRequest, UapiError, encode_get, encode_set, parse_errno, parse_get
from tests.conftest import read_static


def test_parse_real_get_reply() -> None:
    dev = parse_get("capwg0", read_static("wireguard-go-0.0.20220316-get.txt").decode())
    assert dev.listen_port == 51999
    assert dev.public_key == KeyPair.from_private(dev.private_key or "").public
    by_endpoint = {p.endpoint: p for p in dev.peers}
    assert set(by_endpoint) == {"10.250.0.2:51820", "[fd00::2]:51820"}
    full = by_endpoint["10.250.0.2:51820"]
    assert full.allowed_ips == {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}
    assert full.last_handshake == 0.0 and full.persistent_keepalive == 0
    assert by_endpoint["[fd00::2]:51820"].persistent_keepalive == 25


def test_encode_set_uses_hex_keys_and_ends_with_a_blank_line() -> None:
    me, peer = KeyPair.generate(), KeyPair.generate()
    data = encode_set(
        SetRequest(
            private_key=me.private,
            listen_port=51900,
            peers=(
                SetPeer(peer.public, update_only=True, endpoint="10.0.0.1:1", persistent_keepalive=10,
                        replace_allowed_ips=True, allowed_ips=(ipaddress.ip_network("0.0.0.0/0"),)),
                SetPeer(KeyPair.generate().public, remove=True),
            ),
        )
    ).decode()
    lines = data.split("\n")
    assert lines[0] == "set=1"
    assert lines[1] == f"private_key={decode_key(me.private).hex()}"
    assert f"public_key={key_to_hex(peer.public)}" in lines
    assert lines[lines.index(f"public_key={key_to_hex(peer.public)}") + 1 :][:5] == [
        "update_only=true", "endpoint=10.0.0.1:1", "persistent_keepalive_interval=10",
        "replace_allowed_ips=true", "allowed_ip=0.0.0.0/0",
    ]
    assert "remove=true" in lines
    assert data.endswith("\n\n") and "replace_peers" not in data
    assert encode_get() == b"get=1\n\n"


def test_errno() -> None:
    assert parse_errno("errno=0\n\n") == 0
    assert parse_errno("errno=-22\n\n") == -22
    with pytest.raises(UapiError):
        parse_errno("garbage")
    with pytest.raises(UapiError, match="errno -22"):
        parse_get("x", "errno=-22\n\n")


def test_bad_get_reply_is_a_uapi_error() -> None:
    with pytest.raises(UapiError, match="bad UAPI"):
        parse_get("x", "listen_port\nerrno=0\n\n")
    with pytest.raises(UapiError, match="bad UAPI value"):
        parse_get("x", "public_key=zz\nerrno=0\n\n")


def test_key_conversions() -> None:
    k = KeyPair.generate()
    assert hex_to_key(key_to_hex(k.public)) == k.public
    with pytest.raises(ValueError, match="base64"):
        decode_key("not base64!")
    with pytest.raises(ValueError, match="32 bytes"):
        decode_key("AAAA")


def test_public_keys_are_x25519_as_wg_derives_them() -> None:
    # RFC 7748 section 6.1: Alice's private key and public key.
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    expected = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert KeyPair.from_private(encode_key(alice)).public == encode_key(expected)
    # A generated key is stored clamped, as `wg genkey` writes it; clamping does not change the public key.
    k = KeyPair.generate()
    raw = decode_key(k.private)
    assert raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40
    assert KeyPair.from_private(encode_key(clamp(alice))).public == encode_key(expected)


def test_key_files_must_be_private(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "wg.key"
    k = KeyPair.generate()
    write_private_key(str(path), k)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert read_private_key(str(path)) == k
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        read_private_key(str(path), "uplink[0].private_key_file")
    assert info.value.field == "uplink[0].private_key_file"
    assert k.private not in str(info.value)
    path.chmod(0o600)
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match="bad private key file") as info:
        read_private_key(str(path))
    assert "not a key" not in str(info.value)
