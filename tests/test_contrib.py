"""contrib/: the systemd unit passes systemd-analyze, the samples agree with the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.cli import main
from meshctl.config import DEFAULT_CONFIG, DEFAULT_CONTROL_SOCKET
from meshctl.lab.plan import MESHCTL_RTPROTO, MESHCTL_STANDBY_RTPROTO, STANDBY_METRIC
from meshctl.wireguard.keys import KeyPair, write_private_key

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
UNIT = CONTRIB / "meshctl.service"


def meshctl_executable() -> str:
    found = shutil.which("meshctl", path=os.path.dirname(sys.executable)) or shutil.which("meshctl")
    if found is None:
        pytest.skip("no meshctl executable installed (pip install -e .)")
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's meshctl.
    unit = tmp_path / "meshctl.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/meshctl", meshctl_executable()))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys and bad values; any line about our unit is a problem.
    ours = [line for line in (out.stdout + out.stderr).splitlines() if "meshctl.service" in line]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "meshctl.service"
    text = UNIT.read_text().replace("/usr/local/bin/meshctl", meshctl_executable())
    unit.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "meshctl.service" in out.stdout + out.stderr


def test_unit_uses_the_default_paths() -> None:
    text = UNIT.read_text()
    assert f"daemon --config {DEFAULT_CONFIG}" in text
    assert f"check-config {DEFAULT_CONFIG}" in text
    assert "RuntimeDirectory=meshctl" in text and DEFAULT_CONTROL_SOCKET.startswith("/run/meshctl/")
    assert re.search(r"^After=.*babeld\.service", text, re.M)
    assert "Restart=on-failure" in text


def test_babeld_fragment_matches_what_the_gateway_installs() -> None:
    text = (CONTRIB.parent / "babel" / "babeld-meshctl.conf").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert f"redistribute proto {MESHCTL_RTPROTO} allow" in lines
    assert f"redistribute proto {MESHCTL_STANDBY_RTPROTO} metric {STANDBY_METRIC}" in lines
    assert any(line.startswith(("local-path-readwrite", "local-port-readwrite")) for line in lines)
    # The allow lines must come before the catch-all denies, or they never match.
    assert lines.index(f"redistribute proto {MESHCTL_RTPROTO} allow") < lines.index("redistribute deny")


def test_sample_node_config_passes_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "wg-up.key"
    write_private_key(str(key), KeyPair.generate())
    secret = tmp_path / "uplink.secret"
    secret.write_text("x" * 32)
    secret.chmod(0o600)
    text = (CONTRIB / "node.toml.example").read_text()
    text = text.replace("/etc/meshctl/wg-up.key", str(key)).replace("/etc/meshctl/uplink.secret", str(secret))
    path = tmp_path / "node.toml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().out
    # and with the commented gateway section turned on
    key2 = tmp_path / "wg-gw.key"
    write_private_key(str(key2), KeyPair.generate())
    on = re.sub(r"^# ?", "", text.split("# [gateway]", 1)[1], flags=re.M)
    path.write_text(text + "[gateway]" + on.replace("/etc/meshctl/wg-gw.key", str(key2)).replace(
        "/etc/meshctl/uplink.secret", str(secret)))
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_unit_sandbox_scores_at_most_2_5() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for meshctl\.service: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.5, out.stdout


def test_unit_keeps_what_the_daemon_needs() -> None:
    """The sandbox must not take away what a fail-over uses: netlink, the UAPI sockets, the TUN device."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_NET_RAW"]  # routes and netlink; raw ICMP checks
    assert set(settings["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert "wireguard" in settings["RuntimeDirectory"][0].split()  # wireguard-go's UAPI sockets, under ProtectSystem=strict
    assert settings["DeviceAllow"] == ["/dev/net/tun rw"]
    assert settings["SystemCallErrorNumber"] == ["EPERM"]  # a filtered call fails; it never kills the daemon
    # After a crash the gateway's routes must not outlive it: withdrawn after every stop.
    assert settings["ExecStopPost"] == ["/usr/local/bin/meshctl withdraw --config /etc/meshctl/node.toml"]
