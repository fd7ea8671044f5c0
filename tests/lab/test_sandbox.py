"""What contrib/meshctl.service allows is enough: under the unit's capability set and system-call filter,
wireguard-go makes its device and UAPI socket, and meshctl's UAPI client, netlink (addresses, links,
routes with the gateway's protocol), raw ICMP and device-bound UDP sockets all work.

The filter comes from the unit itself (tests/lab/sandbox_exec.py, libseccomp), the capabilities from setpriv.
Not covered here: the mount namespace settings (ProtectSystem=, PrivateTmp=, ...), which need systemd.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from meshctl.wireguard.uapi_client import socket_path
from tests.lab.conftest import unique_tag

ROOT = Path(__file__).resolve().parent.parent.parent
UNIT = ROOT / "contrib" / "meshctl.service"
SANDBOX = Path(__file__).resolve().parent / "sandbox_exec.py"

PROBE = r"""
import asyncio, ipaddress, socket, sys
from pyroute2 import IPRoute
from meshctl.wireguard.backend import UapiBackend
from meshctl.wireguard.keys import KeyPair
from meshctl.wireguard.uapi import SetPeer, SetRequest

ifname = sys.argv[1]
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1", status
assert int(status["CapEff"], 16) == (1 << 12) | (1 << 13), status["CapEff"]  # CAP_NET_ADMIN, CAP_NET_RAW only

me, peer = KeyPair.generate(), KeyPair.generate()
prefix = ipaddress.ip_network("0.0.0.0/0")

async def uapi():
    backend = UapiBackend()
    await backend.write(ifname, SetRequest(private_key=me.private, listen_port=0, peers=(
        SetPeer(peer.public, endpoint="127.0.0.1:9", persistent_keepalive=0, allowed_ips=(prefix,)),)))
    device = await backend.read(ifname)
    assert device.public_key == me.public and device.peer(peer.public).allowed_ips == frozenset({prefix}), device

asyncio.run(uapi())
with IPRoute() as ipr:
    index = ipr.link_lookup(ifname=ifname)[0]
    ipr.addr("add", index=index, address="10.123.0.1", prefixlen=32)
    ipr.link("set", index=index, state="up")
    ipr.route("replace", dst="10.124.0.0/24", oif=index, proto=152)
    assert any(r.get_attr("RTA_DST") == "10.124.0.0" for r in ipr.get_routes(family=socket.AF_INET, proto=152))
    ipr.route("del", dst="10.124.0.0/24", oif=index, proto=152)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
raw.bind(("10.123.0.1", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
udp.bind(("10.123.0.1", 0))
import os
try:  # and the filter is real: a call from @resources (no capability needed) fails with EPERM, and we live on
    os.sched_setaffinity(0, os.sched_getaffinity(0))
    sys.exit("sched_setaffinity was allowed")
except PermissionError:
    pass
print("sandboxed ok")
"""


def daemon_runs_sandboxed(ns: str, sandbox: list[str], env: dict[str, str]) -> None:
    """`meshctl daemon` itself (asyncio, its lock, the control socket, gossip's UDP socket) starts, answers
    `meshctl status`, and stops cleanly on SIGTERM under the sandbox."""
    from meshctl.gossip.signing import SigningKey, write_signing_key

    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "gossip.key")
        write_signing_key(key, SigningKey.generate())
        sock = os.path.join(tmp, "meshctl.sock")
        config = os.path.join(tmp, "node.toml")
        with open(config, "w") as f:
            f.write(f'[node]\nname = "sb"\nbabel = "unix:{tmp}/none.sock"\ncontrol_socket = "{sock}"\n'
                    f'[gossip]\nprivate_key_file = "{key}"\n'
                    f'[[gossip.trust]]\nname = "x"\npublic_key = "{SigningKey.generate().public}"\n')
        daemon = subprocess.Popen(["ip", "netns", "exec", ns, *sandbox, sys.executable, "-m", "meshctl", "daemon",
                                   "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=env)
        try:
            deadline = time.monotonic() + 30
            while subprocess.run([sys.executable, "-m", "meshctl.cli", "status", "--socket", sock], env=env,
                                 capture_output=True).returncode != 0:
                assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
                assert time.monotonic() < deadline, "the sandboxed daemon never answered"
                time.sleep(0.2)
        finally:
            daemon.terminate()
            _, err = daemon.communicate(timeout=15)
        assert daemon.returncode == 0 and "Traceback" not in err, err


def test_daemon_io_works_in_the_units_sandbox() -> None:
    missing = [t for t in ("setpriv", "systemd-analyze", "wireguard-go", "ip") if shutil.which(t) is None]
    seccomp_ok = subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode == 0
    if (missing or not seccomp_ok) and os.environ.get("CI") != "true":
        pytest.skip(f"needs {', '.join(missing) or 'python3-seccomp'} (./bootstrap installs them)")
    tag = unique_tag()
    ns, ifname = f"{tag}-sb", f"{tag}sb0"
    sandbox = ["setpriv", "--bounding-set=-all,+net_admin,+net_raw", "/usr/bin/python3", str(SANDBOX), str(UNIT), "--"]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    wg = None
    try:
        wg = subprocess.Popen(["ip", "netns", "exec", ns, *sandbox, "wireguard-go", "-f", ifname],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(socket_path(ifname)):
            assert wg.poll() is None, f"wireguard-go died in the sandbox: {wg.stderr.read() if wg.stderr else ''}"
            assert time.monotonic() < deadline, "wireguard-go made no UAPI socket"
            time.sleep(0.05)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        probe = subprocess.run(["ip", "netns", "exec", ns, *sandbox, sys.executable, "-c", PROBE, ifname],
                               capture_output=True, text=True, timeout=120, env=env)
        assert probe.returncode == 0 and probe.stdout.strip() == "sandboxed ok", probe.stdout + probe.stderr
        assert wg.poll() is None, "wireguard-go died"
        daemon_runs_sandboxed(ns, sandbox, env)
    finally:
        if wg is not None and wg.poll() is None:
            os.kill(wg.pid, signal.SIGTERM)  # `ip netns exec` execs, so this is wireguard-go's own PID
            try:
                wg.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(wg.pid, signal.SIGKILL)
                wg.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if os.path.exists(socket_path(ifname)):
            os.unlink(socket_path(ifname))
