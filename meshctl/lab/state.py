"""What a lab started and created, and stopping it safely.

The record of a lab survives the process that built it (``state.json``), so
``lab down`` from another shell, or after a crash, removes exactly what this
lab made.  A PID is only signalled while ``/proc/PID/stat`` still shows the
start time we recorded: PIDs get reused, and the lab must never kill a
process it did not start.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field

from meshctl.errors import LabError


@dataclass
class ProcessRecord:
    """A process the lab started."""

    pid: int
    node: str
    what: str  # "babeld" or "wireguard-go IFNAME"
    start_time: int  # /proc/PID/stat field 22: tells a reused PID apart

    def alive(self) -> bool:
        """True while this PID still is the process we started."""
        return process_start_time(self.pid) == self.start_time


def process_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name in parentheses may contain spaces; fields follow ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class LabState:
    """What a lab created, persisted in ``state.json``."""

    name: str
    tag: str
    status: str = "starting"
    namespaces: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    nodes: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> LabState | None:
        """Read a state file, or None if there is none."""
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(f"{path}: unreadable lab state: {exc}") from None
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return cls(**data)

    def save(self, path: str) -> None:
        """Write atomically."""
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {**self.__dict__, "processes": [p.__dict__ for p in self.processes]}, f, indent=2, sort_keys=True
            )
        os.replace(tmp, path)


def stop_processes(records: list[ProcessRecord], sig: int = signal.SIGTERM, grace: float = 3.0) -> set[int]:
    """Signal the live ones, wait up to ``grace`` s, SIGKILL what is left; return the PIDs that needed it."""
    for rec in records:
        if rec.alive():
            os.kill(rec.pid, sig)
    deadline = time.monotonic() + grace
    while any(r.alive() for r in records) and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = {r.pid for r in records if r.alive()}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed
