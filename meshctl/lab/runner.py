"""Bring a :class:`LabPlan` up and down on this machine (the I/O half of the lab).

Every resource is recorded in ``RUN_DIR/state.json`` *before* it is created,
so ``down`` can remove a half-built lab.  ``down`` kills only processes this
lab started, by PID, after checking the PID still runs the same command
(PIDs get reused); it then deletes the namespaces (which takes the veths and
TUN devices with them) and any UAPI socket a killed wireguard-go left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from meshctl.errors import LabError, PermissionDenied
from meshctl.gossip.signing import SigningKey, write_signing_key
from meshctl.lab.plan import STEER_TABLE, LabPlan, NodePlan, node_config, placeholder_name
from meshctl.lab.state import LabState, ProcessRecord, process_start_time, stop_processes
from meshctl.wireguard.keys import KeyPair, read_private_key, write_private_key
from meshctl.wireguard.uapi import SetPeer, SetRequest, UapiError
from meshctl.wireguard.uapi_client import SOCKET_DIR, socket_path, uapi_set

log = logging.getLogger("meshctl.lab")
RESTART_SEC = 2.0  # contrib/meshctl.service's RestartSec

Progress = Callable[[str], None]
NETNS_DIR = "/run/netns"
ALL_V4 = "0.0.0.0/0"
ALL_V6 = "::/0"


def _run(cmd: list[str], stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)} timed out") from None
    if proc.returncode != 0:
        raise LabError(f"{' '.join(cmd[:6])} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _ip_batch(namespace: str | None, commands: list[str]) -> None:
    """Run many ``ip`` commands in one process (fast, and stops at the first error)."""
    if not commands:
        return
    cmd = ["ip", "-batch", "-"] if namespace is None else ["ip", "-n", namespace, "-batch", "-"]
    _run(cmd, "\n".join(commands) + "\n")


# Uplink and gateway tunnels log at verbose: that is where WireGuard reports
# "packet with disallowed source address", the drop a fail-over must avoid.
# (A few lines a minute: handshakes and keepalives.)
UPLINK_WG_LOG_LEVEL = "verbose"


def _tunnel_up(ifname: str, local_ll: object) -> list[str]:
    """ip commands bringing a link tunnel up; addrgenmode none: only the planned fe80::N, so dumps are readable."""
    return [f"link set {ifname} addrgenmode none", f"addr add {local_ll} dev {ifname} nodad", f"link set {ifname} up"]


def require_root() -> None:
    """The lab creates namespaces and interfaces: it needs root."""
    if os.geteuid() != 0:
        raise PermissionDenied("the lab creates network namespaces and interfaces: run it as root")


class Lab:
    """Executes a plan.  ``progress`` gets one human line per step."""

    def __init__(self, plan: LabPlan, progress: Progress | None = None) -> None:
        self.plan = plan
        self.progress = progress or (lambda line: None)
        self.state_path = os.path.join(plan.run_dir, "state.json")

    # -- up -------------------------------------------------------------

    def check_free(self) -> None:
        """Refuse clearly when any name this lab needs is taken."""
        taken = []
        for ns in self.plan.namespaces:
            if os.path.exists(os.path.join(NETNS_DIR, ns)):
                taken.append(f"network namespace {ns}")
        for ifname in self.plan.wireguard_interfaces:
            if os.path.exists(socket_path(ifname)):
                taken.append(f"WireGuard interface {ifname} (UAPI socket {socket_path(ifname)})")
        for node in self.plan.nodes:
            for v in node.veths:
                if os.path.exists(f"/sys/class/net/{v.ifname}"):
                    taken.append(f"interface {v.ifname}")
        if os.path.exists(self.state_path):
            taken.append(f"lab state {self.state_path}")
        if taken:
            raise LabError(
                f"lab {self.plan.name!r} (tag {self.plan.tag}) cannot start, names already in use: "
                + "; ".join(taken[:5])
                + (f" (+{len(taken) - 5} more)" if len(taken) > 5 else "")
                + ". Is it already up? `meshctl lab down` removes it; --tag picks other names."
            )

    def up(self, keep_on_failure: bool = False) -> LabState:
        """Build the lab; on failure remove what was built, then raise."""
        require_root()
        self.check_free()
        os.makedirs(self.plan.run_dir, mode=0o700, exist_ok=True)
        state = LabState(self.plan.name, self.plan.tag)
        state.save(self.state_path)
        try:
            self._up(state)
        except BaseException as exc:
            state.status = "failed"
            state.save(self.state_path)
            if not keep_on_failure:
                self.progress(f"lab up failed ({exc}); removing what was built")
                self.down()
            raise
        state.status = "up"
        state.save(self.state_path)
        return state

    def _up(self, state: LabState) -> None:
        plan = self.plan
        total = len(plan.nodes)
        for node in plan.nodes:
            state.namespaces.append(node.namespace)
            state.interfaces.extend(t.ifname for t in node.tunnels)
            state.save(self.state_path)
            _run(["ip", "netns", "add", node.namespace])
            os.makedirs(node.run_dir, mode=0o700, exist_ok=True)
            commands = ["link set lo up", f"addr add {node.mesh4} dev lo", f"addr add {node.mesh6} dev lo"]
            if not node.tunnels:
                placeholder = placeholder_name(plan.tag, node.index)
                # (no dummy driver in every kernel: a veth pair with both ends here does the same)
                commands += [f"link add {placeholder} type veth peer name {placeholder}x",
                             f"link set {placeholder} up", f"link set {placeholder}x up"]
            for a in node.announce:
                commands.append(f"addr add {a} dev lo")
                if a.network.prefixlen < a.max_prefixlen:
                    # On lo the whole prefix lands in the local table only; babeld
                    # redistributes from main, so give it a route to see.
                    commands.append(f"route add {a.network} dev lo proto static")
                    if a.version == 6:  # IPv4 answers for a whole prefix on lo; IPv6 only for the address
                        commands.append(f"route add local {a.network} dev lo table local")
            _ip_batch(node.namespace, commands)
        # Underlay: one veth pair per link path (its own /30), created straight into both namespaces.
        done: set[object] = set()
        for node in plan.nodes:
            for v in node.veths:
                if v.address.network in done:
                    continue
                done.add(v.address.network)
                other = plan.node(v.peer)
                ov = next(x for x in other.veths if x.peer == node.name and x.address.network == v.address.network)
                _run(
                    ["ip", "link", "add", v.ifname, "netns", node.namespace, "type", "veth",
                     "peer", "name", ov.ifname, "netns", other.namespace]
                )
        for node in plan.nodes:
            commands = [c for v in node.veths for c in (f"addr add {v.address} dev {v.ifname}", f"link set {v.ifname} up")]
            # nodad: a tentative address cannot be a WireGuard endpoint for the second or two DAD takes.
            commands += [f"addr add {v.address6} dev {v.ifname} nodad" for v in node.veths if v.address6 is not None]
            _ip_batch(node.namespace, commands)
        # Tunnels: one wireguard-go per tunnel, keys in 0600 files.
        keys: dict[str, KeyPair] = {}
        for node in plan.nodes:
            for t in node.tunnels:
                keys[t.ifname] = KeyPair.generate()
                write_private_key(os.path.join(node.run_dir, f"{t.ifname}.key"), keys[t.ifname])
                self._spawn(state, node, ["wireguard-go", "-f", t.ifname], f"wireguard-go {t.ifname}", f"{t.ifname}.log")
        self._wait_for(
            [socket_path(t.ifname) for n in plan.nodes for t in n.tunnels], "wireguard-go UAPI sockets", state
        )
        asyncio.run(self._configure_tunnels(keys))
        for n, node in enumerate(plan.nodes, 1):
            _ip_batch(node.namespace, [c for t in node.tunnels for c in _tunnel_up(t.ifname, t.local_ll)])
            conf = os.path.join(node.run_dir, "babeld.conf")
            with open(conf, "w") as f:
                f.write(node.babeld_conf)
            pid = self._spawn(state, node, ["babeld", "-c", conf], "babeld", "babeld.log")
            state.nodes[node.name] = {
                "namespace": node.namespace,
                "router_id": node.router_id,
                "mesh4": str(node.mesh4.ip),
                "mesh6": str(node.mesh6.ip),
                "babel": f"unix:{node.babel_socket}",
                "tunnels": [t.ifname for t in node.tunnels],
            }
            self.progress(
                f"[{n}/{total}] {node.name}: netns {node.namespace}, {len(node.tunnels)} tunnel(s), "
                f"{node.mesh4.ip}, babeld pid {pid}"
            )
        self._wait_for([n.babel_socket for n in plan.nodes], "babeld local sockets", state)
        if any(n.daemon or n.uplink or n.gateway_ifname for n in plan.nodes):
            self._up_daemons(state)  # the uplink plane exists without daemons too (the bench drives it by hand)

    def _up_daemons(self, state: LabState) -> None:
        """The uplink plane (one interface per client and per gateway, configured by meshctl
        daemon), gossip keys, and a meshctl daemon on every node that has one."""
        plan = self.plan
        gossip: dict[str, str] = {}  # node -> Ed25519 public key
        link_keys: dict[str, str] = {}  # node -> WireGuard public key of its managed tunnels
        for node in plan.nodes:
            if node.daemon:
                key = SigningKey.generate()
                write_signing_key(os.path.join(node.run_dir, "gossip.key"), key)
                gossip[node.name] = key.public
            if node.managed:
                pair = KeyPair.generate()
                write_private_key(os.path.join(node.run_dir, "links.key"), pair)
                link_keys[node.name] = pair.public
        secret_file = os.path.join(plan.run_dir, "uplink.secret")
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        public: dict[str, str] = {}
        for node in plan.nodes:
            for ifname in [x for x in (node.uplink.ifname if node.uplink else None, node.gateway_ifname) if x]:
                keys = KeyPair.generate()
                write_private_key(os.path.join(node.run_dir, f"{ifname}.key"), keys)
                public[ifname] = keys.public
                self._spawn(state, node, ["wireguard-go", "-f", ifname], f"wireguard-go {ifname}", f"{ifname}.log",
                            UPLINK_WG_LOG_LEVEL)
        self._wait_for([socket_path(i) for i in public], "uplink wireguard-go sockets", state)
        for node in plan.nodes:
            self._uplink_addressing(node)
            if node.daemon:
                with open(node.config_path, "w") as f:
                    f.write(node_config(node, plan, public, secret_file, gossip, link_keys))
                pid = self._spawn(state, node, self._supervised(node), "meshctl daemon", "meshctl.log")
                self.progress(f"  {node.name}: meshctl daemon (supervisor pid {pid})")
        self._wait_for([n.control_socket for n in plan.nodes if n.daemon], "meshctl daemons", state)

    @staticmethod
    def _supervised(node: NodePlan) -> list[str]:
        """The daemon as contrib/meshctl.service runs it: restarted 2 s after a crash, routes withdrawn after each stop."""
        cli = [sys.executable, "-m", "meshctl"]
        return [sys.executable, "-m", "meshctl.lab.supervise", "--restart-sec", str(RESTART_SEC),
                "--pid-file", node.daemon_pid_file,
                "--stop-post", json.dumps([*cli, "withdraw", "--config", node.config_path]),
                "--", *cli, "daemon", "--config", node.config_path]

    def daemon_pid(self, node_name: str) -> int | None:
        """The running daemon's own PID (its supervisor's child), if any."""
        try:
            with open(self.plan.node(node_name).daemon_pid_file) as f:
                pid = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_start_time(pid) is not None else None

    def kill_daemon(self, node_name: str, sig: int = signal.SIGKILL) -> int:
        """Signal the daemon itself (not its supervisor, which restarts it after RESTART_SEC); returns its PID."""
        self._state()  # the lab is up
        pid = self.daemon_pid(node_name)
        if pid is None:
            raise LabError(f"no running meshctl daemon on {node_name}")
        os.kill(pid, sig)
        return pid

    def kill_babeld(self, node_name: str) -> None:
        """SIGKILL one node's babeld: no state file written, its routes left in the kernel."""
        state = self._state()
        stop_processes([r for r in state.processes if r.node == node_name and r.what == "babeld"], signal.SIGKILL)
        state.processes = [r for r in state.processes if r.what != "babeld" or r.node != node_name or r.alive()]
        state.save(self.state_path)

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Take the underlay link between two nodes down (a cut cable) or up again, on ``a``'s side."""
        node = self.plan.node(a)
        veths = [v.ifname for v in node.veths if v.peer == b]
        if not veths:
            raise LabError(f"no link between {a} and {b}")
        _ip_batch(node.namespace, [f"link set {v} {'up' if up else 'down'}" for v in veths])

    def _uplink_addressing(self, node: NodePlan, only: str | None = None) -> None:
        """Addresses, rules and routes of a node's uplink/gateway interfaces.

        WireGuard's own configuration is the daemon's job.  ``only`` redoes one
        interface after its wireguard-go restarted (the source rule survives that).
        """
        cmds = []
        if node.uplink and only in (None, node.uplink.ifname):
            up = node.uplink
            cmds += [f"link set {up.ifname} addrgenmode none"]
            cmds += [f"addr add {a} dev {up.ifname}" + (" nodad" if a.version == 6 else "") for a in up.addresses]
            cmds += [f"link set {up.ifname} up"]
            if only is None:
                # Traffic from the client's uplink addresses takes the uplink; the rest follows Babel.
                # (`ip -batch` lines take no -6, and `ip rule` does not guess the family from the address.)
                for a in up.addresses:
                    _run(["ip", "-n", node.namespace, f"-{a.version}", "rule", "add", "from", str(a.ip),
                          "lookup", str(STEER_TABLE), "priority", "100"])
            cmds += [f"route add {p} dev {up.ifname} table {STEER_TABLE}" for p in up.steer]
        if node.gateway_ifname and node.gateway_address and only in (None, node.gateway_ifname):
            nodad = " nodad" if node.gateway_address.version == 6 else ""
            cmds += [f"link set {node.gateway_ifname} addrgenmode none",
                     f"addr add {node.gateway_address} dev {node.gateway_ifname}{nodad}",
                     f"link set {node.gateway_ifname} up"]
        if cmds:
            _ip_batch(node.namespace, cmds)
            # Right after a switch the new gateway forwards for the client before
            # Babel has moved the return route: strict reverse-path filtering would drop it.
            _run(["ip", "netns", "exec", node.namespace, "sysctl", "-qw",
                  "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])

    def restart_wireguard(self, node_name: str, ifname: str) -> int:
        """Kill one wireguard-go and start a fresh one (empty config, new TUN device)."""
        state = self._state()
        node = self.plan.node(node_name)
        stop_processes([r for r in state.processes if r.node == node_name and r.what == f"wireguard-go {ifname}"], signal.SIGKILL)
        state.processes = [r for r in state.processes if r.alive()]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path(ifname))
        # The kernel unregisters the old TUN device asynchronously; a new
        # wireguard-go started before it is gone fails to create its own.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            probe = subprocess.run(["ip", "-n", node.namespace, "link", "show", ifname], capture_output=True)
            if probe.returncode != 0:
                break
            time.sleep(0.02)
        tunnel = next((t for t in node.tunnels if t.ifname == ifname), None)
        level = "error" if tunnel is not None else UPLINK_WG_LOG_LEVEL
        pid = self._spawn(state, node, ["wireguard-go", "-f", ifname], f"wireguard-go {ifname}", f"{ifname}.log", level)
        self._wait_for([socket_path(ifname)], f"wireguard-go {ifname}", state)
        if tunnel is not None:
            _ip_batch(node.namespace, _tunnel_up(ifname, tunnel.local_ll))
        else:
            self._uplink_addressing(node, only=ifname)
        return pid

    async def _configure_tunnels(self, keys: dict[str, KeyPair]) -> None:
        jobs = []
        for node in self.plan.nodes:
            for t in node.tunnels:
                request = SetRequest(
                    private_key=read_private_key(os.path.join(node.run_dir, f"{t.ifname}.key")).private,
                    listen_port=t.listen_port,
                    peers=(
                        SetPeer(
                            public_key=keys[t.peer_ifname].public,
                            endpoint=t.endpoint,
                            replace_allowed_ips=True,
                            allowed_ips=(_net(ALL_V6), _net(ALL_V4)),
                        ),
                    ),
                )
                jobs.append(uapi_set(t.ifname, request))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, UapiError):
                raise LabError(f"configuring a tunnel failed: {result}")
            if isinstance(result, BaseException):
                raise result

    def _spawn(self, state: LabState, node: NodePlan, argv: list[str], what: str, logname: str,
               log_level: str = "error") -> int:
        logfile = open(os.path.join(node.run_dir, logname), "ab")  # noqa: SIM115 - handed to the child
        # wireguard-go's LOG_LEVEL (errors by default; MESHCTL_LAB_WG_LOG_LEVEL=verbose for all tunnels).
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LOG_LEVEL": os.environ.get("MESHCTL_LAB_WG_LOG_LEVEL", log_level)}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node.namespace, *argv],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives `meshctl lab up` exiting, and its ^C
            )
        except FileNotFoundError:
            raise LabError(f"{argv[0]} is not installed") from None
        finally:
            logfile.close()
        # `ip netns exec` execs the command, so this PID is the daemon's.
        start = None
        for _ in range(100):
            start = process_start_time(proc.pid)
            if start is not None:
                break
            time.sleep(0.001)
        state.processes.append(ProcessRecord(proc.pid, node.name, what, start or 0))
        state.save(self.state_path)
        return proc.pid

    def _wait_for(self, paths: list[str], what: str, state: LabState, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = [p for p in paths if not os.path.exists(p)]
            if not missing:
                return
            dead = [p for p in state.processes if not p.alive()]
            if dead:
                d = dead[0]
                raise LabError(f"{d.what} on node {d.node} exited at start; see its log in {self.plan.run_dir}/{d.node}/")
            if time.monotonic() > deadline:
                raise LabError(f"timed out waiting for {what}: {', '.join(missing[:3])}")
            time.sleep(0.02)

    def stop_babeld(self, node_name: str) -> None:
        """Stop one node's babeld (SIGTERM, as an operator would)."""
        self._stop_process(node_name, "babeld")

    def stop_daemon(self, node_name: str) -> None:
        """Stop one node's meshctl daemon (SIGTERM, as systemd would)."""
        self._stop_process(node_name, "meshctl daemon")

    def signal_daemon(self, node_name: str, sig: int) -> None:
        """Send a signal (SIGHUP: reload) to one node's meshctl daemon."""
        self.kill_daemon(node_name, sig)

    def _stop_process(self, node_name: str, what: str) -> None:
        state = self._state()
        stop_processes([r for r in state.processes if r.node == node_name and r.what == what])
        # Forget the dead: nothing to kill later, and not a failed start.
        state.processes = [r for r in state.processes if r.what != what or r.node != node_name or r.alive()]
        state.save(self.state_path)

    def start_babeld(self, node_name: str) -> int:
        """(Re)start one node's babeld with its lab config; returns its PID."""
        state = self._state()
        node = self.plan.node(node_name)
        if any(r.node == node_name and r.what == "babeld" and r.alive() for r in state.processes):
            raise LabError(f"babeld on {node_name} is already running")
        # A killed babeld leaves its pid file, and babeld refuses to start over one.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(node.run_dir, "babeld.pid"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(node.babel_socket)
        pid = self._spawn(state, node, ["babeld", "-c", os.path.join(node.run_dir, "babeld.conf")], "babeld", "babeld.log")
        self._wait_for([node.babel_socket], f"babeld on {node_name}", state)
        return pid

    def fail_node(self, node_name: str) -> None:
        """Simulate a node losing power: its underlay links go down, every process of it dies at once."""
        state = self._state()
        node = self.plan.node(node_name)
        _ip_batch(node.namespace, [f"link set {v.ifname} down" for v in node.veths])
        daemon = self.daemon_pid(node_name)
        if daemon is not None:  # before its supervisor, which would otherwise stop it cleanly
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
        mine = [r for r in state.processes if r.node == node_name and r.alive()]
        for rec in mine:
            os.kill(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0  # SIGKILL is not instant: wait, so no dead process stays on record
        while any(r.alive() for r in mine) and time.monotonic() < deadline:
            time.sleep(0.01)
        state.processes = [r for r in state.processes if r.node != node_name or r.alive()]
        state.save(self.state_path)

    def _state(self) -> LabState:
        state = LabState.load(self.state_path)
        if state is None:
            raise LabError(f"lab {self.plan.name!r} (tag {self.plan.tag}) is not up")
        return state

    # -- down -----------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything this lab made; return one line per thing removed."""
        require_root()
        state = LabState.load(self.state_path)
        removed: list[str] = []
        records = state.processes if state else []
        # After a reboot or a crash the recorded processes are gone; say so rather than claim to stop them.
        gone = {r.pid for r in records if not r.alive()}
        killed = stop_processes(records)
        for rec in records:
            if rec.pid in gone:
                removed.append(f"{rec.what} (pid {rec.pid}) on {rec.node} was already gone")
                continue
            verb = "killed" if rec.pid in killed else "stopped"
            removed.append(f"{verb} {rec.what} (pid {rec.pid}) on {rec.node}")
        # Only what this lab recorded (it records each before creating it): a namespace that merely has
        # one of our names was made by someone else, and is theirs.
        namespaces = set(state.namespaces if state else [])
        for ns in sorted(namespaces):
            if os.path.exists(os.path.join(NETNS_DIR, ns)):
                try:
                    _run(["ip", "netns", "del", ns])
                    removed.append(f"deleted namespace {ns}")
                except LabError as exc:
                    log.warning("%s", exc)
        interfaces = set(self.plan.wireguard_interfaces) | set(state.interfaces if state else [])
        for ifname in sorted(interfaces):
            path = socket_path(ifname)
            if os.path.exists(path) and not _socket_live(path):
                os.unlink(path)
                removed.append(f"removed stale UAPI socket {path}")
        if os.path.isdir(self.plan.run_dir):
            shutil.rmtree(self.plan.run_dir, ignore_errors=True)
            removed.append(f"removed {self.plan.run_dir}")
        return removed

    def status(self) -> dict:
        """The recorded state plus liveness of each process."""
        state = LabState.load(self.state_path)
        if state is None:
            return {"name": self.plan.name, "tag": self.plan.tag, "status": "down"}
        processes = [{**p.__dict__, "alive": p.alive()} for p in state.processes]
        status = state.status
        if status == "up" and any(not p["alive"] for p in processes):
            status = "degraded"  # never "up" beside a dead process
        return {
            "name": state.name,
            "tag": state.tag,
            "status": status,
            "nodes": state.nodes,
            "processes": processes,
        }


def _socket_live(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _net(text: str):  # noqa: ANN202 - tiny helper
    import ipaddress

    return ipaddress.ip_network(text)


__all__ = ["Lab", "LabState", "SOCKET_DIR", "require_root"]
