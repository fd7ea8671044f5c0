"""Run one command the way contrib/meshctl.service has systemd run the daemon.

``Restart=on-failure``, ``RestartSec``, ``ExecStopPost``: when the command
dies of a signal or exits non-zero, run the stop-post command, wait the
restart delay, and start it again; a clean exit (0) ends supervision.
SIGTERM to the supervisor is passed on to the command, then the stop-post
command runs and the supervisor exits.  The command's current PID is kept in
``--pid-file`` so a test can SIGKILL exactly the daemon, as the kernel's OOM
killer or an operator would.

Imports only the standard library: it is a process per lab node.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the supervisor dies, so nothing outlives the lab."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshctl.lab.supervise", description=__doc__)
    parser.add_argument("--restart-sec", type=float, default=2.0)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--stop-post", default="[]", help="JSON list: the command to run after each stop")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    stop_post = json.loads(args.stop_post)
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    restarts = 0
    while True:
        child = subprocess.Popen(command, preexec_fn=_die_with_parent)
        with open(args.pid_file + ".tmp", "w") as f:
            f.write(f"{child.pid}\n")
        os.replace(args.pid_file + ".tmp", args.pid_file)
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:
                continue
        if stop_post:
            subprocess.run(stop_post, check=False)
        if stopping or code == 0:
            break
        restarts += 1
        print(f"supervise: {command[0]} ended ({'signal ' + str(-code) if code < 0 else 'exit ' + str(code)}); "
              f"restart {restarts} in {args.restart_sec:g} s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.restart_sec
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, deadline - time.monotonic()))
        if stopping:
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
