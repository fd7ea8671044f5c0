"""Footprint on a router: what meshctl costs beside what it cannot avoid, measured in one run.

Big tables (no root needed): a synthetic babeld table of 10k, 100k and 300k routes.
- dump -> model: the protocol and the model take the table, in this process, beside the
  split-only baseline (split the same bytes into lines and tokens); CPU time, and the peak of
  Python's own allocations (tracemalloc) in a separate run.
- ``topology dump``: ``meshctl topology dump`` as a process against a stand-in babeld (its own
  process), beside ``bench/split_client.py``, which only reads and splits the same lines; wall
  time and each process's peak RSS.
- sync: the daemon's babeld client (``bench/sync_client.py``) from connect to synced.

Labs (root): the seed lab and grid4x4, every node running babeld and ``meshctl daemon``.
- each daemon's RSS and idle CPU beside babeld's on the same node, and beside the floor: a
  bare interpreter importing exactly the libraries that node's config uses;
- each uplink client's idle CPU beside its CPU floor (``bench/idle_floor.py``): a bare asyncio
  program doing only the I/O any client must do at that probe rate (probes out, answers and
  babeld's lines in, on the same beat), so what meshctl's own logic adds shows apart from what
  CPython costs for the I/O;
- import time, meshctl against its floor;
- exec to synced: a node's daemon stopped and exec'd again, until its status says synced.

Times are min/median/max over the runs; ratios are median over median, from the same run.
The machine may be shared: CPU time is less disturbed by other processes than wall time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench.model_bench import baseline as split_only
from bench.model_bench import traced_peak
from bench.standin import route_lines
from meshctl.babel.connection import table_arriving
from meshctl.babel.protocol import BabelProtocol
from meshctl.topology.model import MeshView

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUTE_COUNTS = (10_000, 100_000, 300_000)
READ_SIZE = 262144  # what asyncio's socket transport reads at most per call (Python 3.11)
BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost bench\nmy-id 02:00:00:00:00:00:00:01\nok\n"
Row = tuple[str, ...]


def spread(values: Sequence[float], scale: float = 1000.0, digits: int = 0) -> str:
    """``min/median/max`` of ``values`` times ``scale`` (ms by default)."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return "/".join(f"{v * scale:.{digits}f}" for v in (low, mid, high))


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


# -- dump -> model, in this process ---------------------------------------


def to_model(data: bytes) -> MeshView:
    """What the daemon's client does with a table: the protocol parses, the view builds a model."""
    view = MeshView()
    proto = BabelProtocol()
    proto.receive_data(data[: len(BANNER)])
    view.replay(proto.events())
    with table_arriving():
        proto.send("monitor")
        for i in range(len(BANNER), len(data), READ_SIZE):
            proto.receive_data(data[i : i + READ_SIZE])
            while (event := proto.next_event()) is not None:
                view.apply(event)
        view.end_sync()
    return view


def cpu_times(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        out.append(time.process_time() - start)
    return out


def dump_to_model(count: int, repeat: int) -> Row:
    data = BANNER + route_lines(count) + b"ok\n"
    view = to_model(data)
    assert view.model.route_count == count, view.model.route_count
    del view
    base = cpu_times(lambda: split_only(data), repeat)
    model = cpu_times(lambda: to_model(data), repeat)
    return (f"dump -> model, {count:,} routes", spread(base), spread(model),
            f"{statistics.median(model) / statistics.median(base):.1f}x",
            mib(traced_peak(lambda: (data.split(b"\n"), split_only(data)))), mib(traced_peak(lambda: to_model(data))))


# -- topology dump and sync, as processes ----------------------------------


@contextlib.contextmanager
def standin(count: int) -> Iterator[str]:
    """A stand-in babeld serving ``count`` routes, in its own process; yields its address."""
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-") as d:
        path = os.path.join(d, "babel.sock")
        proc = subprocess.Popen([sys.executable, "-m", "bench.standin", path, str(count)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield f"unix:{path}"
        finally:
            proc.terminate()
            proc.wait(10)


def run_isolated(argv: list[str]) -> tuple[float, int, str]:
    """Run ``argv``: (wall seconds, its own peak RSS in bytes, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(HERE, "peak.py"), *argv], cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:5])} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return wall, int(done.stderr.split()[-1]), done.stdout.decode()


def topology_dump(count: int, repeat: int) -> list[Row]:
    with standin(count) as address:
        split = [run_isolated([sys.executable, os.path.join(HERE, "split_client.py"), address]) for _ in range(repeat)]
        dump = [run_isolated([sys.executable, "-m", "meshctl", "topology", "dump", "--babel", address,
                              "--timeout", "30"]) for _ in range(repeat)]
        sync = [run_isolated([sys.executable, os.path.join(HERE, "sync_client.py"), address]) for _ in range(repeat)]
    assert all(json.loads(out)["routes"].__len__() == count for _, _, out in dump[:1])
    ratio = statistics.median(w for w, _, _ in dump) / statistics.median(w for w, _, _ in split)
    synced = [float(out.split()[0]) for _, _, out in sync]
    return [
        (f"topology dump, {count:,} routes", spread([w for w, _, _ in split]), spread([w for w, _, _ in dump]),
         f"{ratio:.1f}x", mib(max(p for _, p, _ in split)), mib(max(p for _, p, _ in dump))),
        (f"daemon client sync, {count:,} routes", "", spread(synced), "", "", mib(max(p for _, p, _ in sync))),
    ]


def run_tables(counts: Sequence[int] = ROUTE_COUNTS, repeat: int = 3) -> list[Row]:
    rows: list[Row] = []
    for count in counts:
        rows.append(dump_to_model(count, repeat))
        rows.extend(topology_dump(count, repeat))
    return rows


# -- the labs ---------------------------------------------------------------


def libraries(config_path: str, metrics: bool) -> list[str]:
    """The third-party (and asyncio) imports a daemon with this config needs: its floor.

    Kept in step with the daemon by tests/test_footprint.py, which checks what a daemon loads.
    """
    from meshctl.config import load_config

    config = load_config(config_path)
    # The loop, control messages, and the standard library's TOML reader every config is read with (a
    # library like asyncio: its 1.6 ms were counted as meshctl's own until now).
    libs = ["asyncio", "msgpack", "tomllib"]
    # Keys (X25519 for WireGuard, Ed25519 for gossip) are libsodium's, through PyNaCl's bindings.
    if config.uplinks or config.gateway or config.links or config.gossip:
        libs.append("nacl.bindings")
    if config.uplinks or config.gateway:
        libs += ["asyncio_dgram", "hmac"]  # the uplink control sockets; their MACs
    if config.gossip:
        libs.append("nacl.signing")
        libs.append("networkx")  # the mesh graph gossip builds (the model alone loads it only for exports)
    if config.gateway or config.links:
        libs.append("pyroute2")
    if metrics or config.metrics:
        libs.append("prometheus_client")
    return list(dict.fromkeys(libs))


# Import times are the importing process's CPU time: on a shared machine, wall time mostly measures the others.
IMPORTER = """
import sys, time
start = time.process_time()
for name in sys.argv[1:]:
    __import__(name)
took = time.process_time() - start
# The daemon lets the TOML reader go once its config is read (meshctl.tomlfile.forget_parser): so does the floor.
for name in [m for m in sys.modules if m == "tomllib" or m.startswith("tomllib.")]:
    del sys.modules[name]
import gc; gc.collect()
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(took, rss * 1024)
"""

DAEMON_IMPORTER = """
import sys, time
for name in sys.argv[3:]:  # libraries imported before the clock starts: meshctl's own share alone
    __import__(name)
start = time.process_time()
import meshctl.__main__  # the meshctl command; a daemon's command line loads no more of the CLI than this
import meshctl.node.command
from meshctl.config import load_config
from meshctl.node.daemon import Daemon
Daemon(load_config(sys.argv[1]), metrics=sys.argv[2] or None)  # the config's own lazy imports happen here
took = time.process_time() - start
print(took)
"""


#: Names in the table for libraries whose last part says little.
SHORT = {"nacl.bindings": "libsodium", "nacl.signing": "ed25519"}


def floor(libs: list[str], repeat: int = 5) -> tuple[list[float], int]:
    """Import times and the smallest RSS of a bare interpreter importing ``libs``."""
    runs = [subprocess.run([sys.executable, "-c", IMPORTER, *libs], capture_output=True, text=True, check=True)
            for _ in range(repeat)]
    values = [r.stdout.split() for r in runs]
    return [float(t) for t, _ in values], min(int(rss) for _, rss in values)


def meshctl_imports(config_path: str, metrics: str, repeat: int = 5, preload: Sequence[str] = ()) -> list[float]:
    """CPU seconds to import meshctl's CLI and a daemon for this config (with its libraries), and build it.

    ``preload``: libraries imported before the clock starts, to time meshctl's own modules and start alone.

    meshctl compiled first, as pip compiles an installed package (and the libraries in the floor):
    with PYTHONDONTWRITEBYTECODE set, each run would otherwise compile every module it imports.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "meshctl")], check=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    return [float(subprocess.run([sys.executable, "-c", DAEMON_IMPORTER, config_path, metrics, *preload],
                                 capture_output=True, text=True, check=True, cwd=ROOT).stdout) for _ in range(repeat)]


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def proc_cpu(pid: int) -> float:
    """CPU seconds a process has used, in nanoseconds from the scheduler (clock ticks are 10 ms: too coarse
    for a babeld that uses 0.05 % of a core)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def daemon_status(path: str) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(path)
        s.sendall(b"status\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status: dict = json.loads(data)
    return status


def idle_floor(node: Any) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Start the idle-CPU floor of an uplink client in its namespace: (echo, client); the caller kills both."""
    uplink = node.uplink
    port = 47000 + secrets.randbelow(1000)
    run = ["ip", "netns", "exec", node.namespace, sys.executable, os.path.join(HERE, "idle_floor.py")]
    echo = subprocess.Popen([*run, "echo", str(port)], stdin=subprocess.DEVNULL)
    time.sleep(0.3)  # bound before the first probe
    client = subprocess.Popen([*run, "client", node.babel_socket, str(port), str(len(uplink.gateways)),
                               str(uplink.probe_interval)], stdin=subprocess.DEVNULL)
    return echo, client


def exec_to_synced(lab: object, node_name: str, repeat: int) -> list[float]:
    """Stop the node's daemon, exec it again with its config, and time until its status says synced."""
    from meshctl.lab.runner import Lab

    assert isinstance(lab, Lab)
    node = lab.plan.node(node_name)
    out = []
    for _ in range(repeat):
        lab.stop_daemon(node_name)
        start = time.perf_counter()
        proc = subprocess.Popen(["ip", "netns", "exec", node.namespace, sys.executable, "-m", "meshctl", "daemon",
                                 "--config", node.config_path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            while True:
                with contextlib.suppress(OSError, ValueError):
                    if daemon_status(node.control_socket)["babel"]["synced"]:
                        break
                if time.perf_counter() - start > 30:
                    raise RuntimeError(f"{node_name}: the daemon did not sync within 30 s")
                time.sleep(0.005)
            out.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(10)
    return out


def run_lab(topology: str, settle: float = 10.0, window: float = 20.0, repeat: int = 3,
            gossip_lifetime: float | None = None) -> list[Row]:
    """One lab: per node, the daemon beside babeld and the floor; then imports and exec to synced.

    ``gossip_lifetime``: run the daemons with this instead of the lab's own (10 s, so that tests see a
    stopped node leave the map soon), and measure only what it changes: each node's RSS and idle CPU.
    """
    from meshctl.lab.check import check_converged, wait_until
    from meshctl.lab.plan import make_plan
    from meshctl.lab.runner import Lab, LabState
    from meshctl.lab.spec import load_lab

    spec = load_lab(os.path.join(ROOT, "topologies", f"{topology}.toml"))
    label = topology
    if gossip_lifetime is not None:
        spec = dataclasses.replace(spec, gossip_lifetime=gossip_lifetime)
        label = f"{topology} at lifetime {gossip_lifetime:g} s:"
    lab = Lab(make_plan(spec, "f" + secrets.token_hex(2)))
    rows: list[Row] = []
    try:
        lab.up()
        plan = lab.plan
        wait_until(lambda: check_converged(plan), 120, f"{topology} convergence")

        def all_synced() -> str | None:
            for n in plan.nodes:
                if n.daemon and not daemon_status(n.control_socket)["babel"]["synced"]:
                    return f"{n.name} not synced"
            return None

        wait_until(all_synced, 60, "every daemon synced")
        time.sleep(settle)
        state = LabState.load(lab.state_path)
        assert state is not None
        pids = {(r.node, r.what): r.pid for r in state.processes if r.what == "babeld"}
        for n in plan.nodes:
            if n.daemon:  # the daemon itself, not the supervisor the lab runs it under
                pid = lab.daemon_pid(n.name)
                assert pid is not None, f"{n.name}: no daemon running"
                pids[(n.name, "meshctl daemon")] = pid
        floors_cpu = [(n, idle_floor(n)) for n in plan.nodes if n.daemon and n.uplink is not None]
        try:
            for n, (_, client) in floors_cpu:
                pids[(n.name, "idle floor")] = client.pid
            time.sleep(1.0)  # the floor connected and on its beat
            before = {key: proc_cpu(pid) for key, pid in pids.items()}
            time.sleep(window)
            used = {key: (proc_cpu(pid) - before[key]) / window for key, pid in pids.items()}
        finally:
            for _, started in floors_cpu:
                for proc in started:
                    proc.kill()
                    proc.wait(10)
        floors: dict[tuple[str, ...], tuple[list[float], int]] = {}
        for n in plan.nodes:
            if not n.daemon:
                continue
            libs = tuple(libraries(n.config_path, metrics=True))
            if libs not in floors:
                floors[libs] = floor(list(libs))
            floor_times, floor_rss = floors[libs]
            daemon, babeld = pids[(n.name, "meshctl daemon")], pids[(n.name, "babeld")]
            d_rss = proc_rss(daemon)
            d_cpu, b_cpu = used[(n.name, "meshctl daemon")], used[(n.name, "babeld")]
            rows.append((f"{label} {n.name}", mib(d_rss), mib(floor_rss), f"{(d_rss - floor_rss) / 2**20:+.1f}",
                         mib(proc_rss(babeld)), f"{d_cpu * 100:.2f}", f"{b_cpu * 100:.2f}",
                         f"{d_cpu / b_cpu:.1f}x" if b_cpu else "-",
                         " ".join(SHORT.get(lib, lib.split(".")[-1]) for lib in libs[1:])))
        for n, _ in floors_cpu:
            d_cpu, b_cpu, f_cpu = (used[(n.name, what)] for what in ("meshctl daemon", "babeld", "idle floor"))
            rows.append((f"{label} {n.name}: idle CPU floor (bench/idle_floor.py), daemon {d_cpu / f_cpu:.1f}x it",
                         "", "", "", "", f"{f_cpu * 100:.2f}", f"{b_cpu * 100:.2f}", f"{f_cpu / b_cpu:.1f}x" if b_cpu else "-",
                         ""))
        if gossip_lifetime is not None:
            return rows
        first = next(n for n in plan.nodes if n.daemon)
        probe = next((n for n in plan.nodes if n.uplink), first)
        libs = libraries(probe.config_path, metrics=True)
        floor_times, _ = floors.get(tuple(libs)) or floor(libs)
        ours = meshctl_imports(probe.config_path, probe.metrics)
        rows.append((f"{topology} {probe.name}: imports, floor -> meshctl (ms)", spread(floor_times), spread(ours),
                     f"{(statistics.median(ours) - statistics.median(floor_times)) * 1000:+.0f} ms", "", "", "", "", ""))
        own = meshctl_imports(probe.config_path, probe.metrics, preload=libs)
        rows.append((f"{topology} {probe.name}: imports, meshctl's own with its libraries already imported (ms)",
                     "", spread(own), "", "", "", "", "", ""))
        synced = exec_to_synced(lab, probe.name, repeat)
        rows.append((f"{topology} {probe.name}: exec to synced (ms)", spread(synced), "", "", "", "", "", "", ""))
    finally:
        lab.down()
    return rows


def run_labs(topologies: Sequence[str] = ("seed", "grid4x4")) -> list[Row]:
    """Each lab as its tests run it, then at meshctl's own gossip lifetime, which a node in the field has
    unless its config says otherwise (6x fewer refreshes than the labs')."""
    from meshctl.config import DEFAULT_GOSSIP_LIFETIME

    rows: list[Row] = []
    for topology in topologies:
        rows.extend(run_lab(topology))
    for topology in topologies:
        rows.extend(run_lab(topology, gossip_lifetime=DEFAULT_GOSSIP_LIFETIME))
    return rows
