"""Parser + model throughput and memory on a synthetic dump.

A synthetic babeld dump with 1,000 neighbours and 10,000 routes is parsed
into the model, then 10,000 ``change route`` lines are replayed.  Each stage
is timed beside a baseline measured in the same run: splitting the same bytes
into lines and tokens, which is the least any parser must do.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from meshctl.babel.protocol import BabelProtocol
from meshctl.topology.model import MeshView

NEIGHBOURS = 1000
ROUTES = 10_000
CHANGES = 10_000


def rid(i: int) -> str:
    return f"02:00:00:00:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def synthetic_dump() -> bytes:
    lines = ["BABEL 1.0", "version babeld-1.12.1", "host bench", f"my-id {rid(0)}", "ok"]
    for i in range(NEIGHBOURS):
        lines.append(
            f"add neighbour {0x5500000 + i:x} address fe80::{i + 1:x} if wg{i} reach ffff ureach 0000 "
            f"rxcost 96 txcost 96 rtt 1.{i % 1000:03d} rttcost 0 cost 96"
        )
    for r in range(ROUTES):
        n = r % NEIGHBOURS
        lines.append(
            f"add route {0x7700000 + r:x} prefix 10.{r >> 8 & 0xFF}.{r & 0xFF}.0/24 from 0.0.0.0/0 "
            f"installed {'yes' if r % 3 == 0 else 'no'} id {rid(r // 3 + 1)} metric {96 + r % 500} "
            f"refmetric {r % 500} via fe80::{n + 1:x} if wg{n}"
        )
    lines.append("ok")
    return ("\n".join(lines) + "\n").encode()


def synthetic_changes() -> bytes:
    lines = []
    for c in range(CHANGES):
        r = (c * 7) % ROUTES
        n = r % NEIGHBOURS
        lines.append(
            f"change route {0x7700000 + r:x} prefix 10.{r >> 8 & 0xFF}.{r & 0xFF}.0/24 from 0.0.0.0/0 "
            f"installed yes id {rid(r // 3 + 1)} metric {100 + c % 700} refmetric {c % 500} via fe80::{n + 1:x} if wg{n}"
        )
    return ("\n".join(lines) + "\n").encode()


def baseline(data: bytes) -> int:
    """Split into lines and tokens: the floor for any line parser."""
    count = 0
    for line in data.split(b"\n"):
        count += len(line.decode().split())
    return count


def full(dump: bytes, changes: bytes) -> MeshView:
    view = MeshView()
    proto = BabelProtocol()
    proto.send("dump")
    proto.receive_data(dump)
    view.replay(proto.events())
    if changes:
        proto.receive_data(changes)
        view.replay(proto.events())
    return view


def measure(fn: Callable[[], object], repeat: int = 3) -> tuple[float, int]:
    """Best wall time over ``repeat`` runs, and peak traced memory of one run."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, traced_peak(fn)


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak of Python's own allocations (tracemalloc) while ``fn`` runs and its result is alive."""
    gc.collect()
    tracemalloc.start()
    keep = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del keep
    return peak


def _row(stage: str, lines: int, seconds: float, memory: str) -> tuple[str, str, str, str, str]:
    return (stage, f"{lines}", f"{seconds * 1000:.1f}", f"{lines / seconds:,.0f}", memory)


def run() -> list[tuple[str, str, str, str, str]]:
    dump, changes = synthetic_dump(), synthetic_changes()
    dump_lines, change_lines = dump.count(b"\n"), changes.count(b"\n")
    rows = []
    base_t, base_m = measure(lambda: baseline(dump))
    model_t, model_m = measure(lambda: full(dump, b""))
    rows.append(_row("split lines+tokens (baseline)", dump_lines, base_t, f"{base_m / 2**20:.1f}"))
    rows.append(_row("dump -> full model", dump_lines, model_t, f"{model_m / 2**20:.1f}"))
    view = full(dump, b"")
    assert len(view.model.routes) == ROUTES and len(view.model.neighbours) == NEIGHBOURS
    cbase_t, _ = measure(lambda: baseline(changes))

    def replay() -> MeshView:
        proto = BabelProtocol()
        proto.receive_data(b"BABEL 1.0\nok\n")
        proto.events()
        proto.receive_data(changes)
        model = view.model
        for event in proto.events():
            model.apply(event)
        return view

    change_t, change_m = measure(replay)
    rows.append(_row("split change lines (baseline)", change_lines, cbase_t, "-"))
    rows.append(_row("replay change route", change_lines, change_t, f"{change_m / 2**20:.1f}"))
    ratio_dump = model_t / base_t
    ratio_change = change_t / cbase_t
    rows.append(("ratio dump/baseline", "", f"{ratio_dump:.1f}x", "", ""))
    rows.append(("ratio replay/baseline", "", f"{ratio_change:.1f}x", "", ""))
    return rows
