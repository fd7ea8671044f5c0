"""The kernel backend's translation to pyroute2, and a live test where the module exists."""

from __future__ import annotations

import ipaddress

import pytest

from meshctl.wireguard.backend import kernel_module_loaded
from meshctl.wireguard.keys import KeyPair
from meshctl.wireguard.netlink import parse_info, peer_ops
from meshctl.wireguard.uapi import SetPeer, SetRequest

A, B = KeyPair.generate().public, KeyPair.generate().public


def test_peer_ops_keep_the_diff_order_and_flags() -> None:
    request = SetRequest(
        peers=(
            SetPeer(A, update_only=True, allowed_ips=(ipaddress.ip_network("0.0.0.0/0"),)),
            SetPeer(B, update_only=True, replace_allowed_ips=True, endpoint="[fd00::1]:51820",
                    allowed_ips=(ipaddress.ip_network("10.97.0.3/32"),)),
            SetPeer(KeyPair.generate().public, remove=True),
        )
    )
    ops = peer_ops(request)
    assert [op["public_key"] for op in ops[:2]] == [A, B]
    assert ops[0] == {"public_key": A, "update_only": True, "allowed_ips": ["0.0.0.0/0"]}
    assert ops[1]["replace_allowed_ips"] is True
    assert (ops[1]["endpoint_addr"], ops[1]["endpoint_port"]) == ("fd00::1", 51820)
    assert ops[2]["remove"] is True


def test_parse_info_from_plain_dicts() -> None:
    msg = {
        "WGDEVICE_A_LISTEN_PORT": 51820,
        "WGDEVICE_A_PEERS": [
            {
                "WGPEER_A_PUBLIC_KEY": {"value": A.encode()},
                "WGPEER_A_ENDPOINT": {"addr": "10.0.0.1", "port": 51820},
                "WGPEER_A_ALLOWEDIPS": [{"WGALLOWEDIP_A_IPADDR": "0.0.0.0", "WGALLOWEDIP_A_CIDR_MASK": 0}],
                "WGPEER_A_LAST_HANDSHAKE_TIME": {"tv_sec": 100, "tv_nsec": 0},
            }
        ],
    }
    dev = parse_info("wg0", [msg])
    assert dev.listen_port == 51820
    (peer,) = dev.peers
    assert peer.public_key == A and peer.endpoint == "10.0.0.1:51820"
    assert peer.allowed_ips == {ipaddress.ip_network("0.0.0.0/0")} and peer.last_handshake == 100.0


@pytest.mark.skipif(not kernel_module_loaded(), reason="no kernel WireGuard module on this machine (wireguard-go only)")
def test_netlink_backend_against_the_kernel() -> None:  # pragma: no cover - needs the module
    import asyncio
    import subprocess

    from meshctl.wireguard.diff import diff
    from meshctl.wireguard.netlink import NetlinkBackend
    from meshctl.wireguard.state import Device, Peer

    name = "mcnl" + KeyPair.generate().public[:4].lower().replace("/", "x").replace("+", "y")
    subprocess.run(["ip", "link", "add", name, "type", "wireguard"], check=True)
    try:
        backend = NetlinkBackend()
        want = Device(name, listen_port=51999, private_key=KeyPair.generate().private,
                      peers=(Peer(A, allowed_ips=frozenset({ipaddress.ip_network("10.0.0.0/8")})),))
        request = diff(want, asyncio.run(backend.read(name)))
        assert request is not None
        asyncio.run(backend.write(name, request))
        assert diff(want, asyncio.run(backend.read(name))) is None
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
