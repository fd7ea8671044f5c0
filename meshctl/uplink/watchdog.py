"""The gateway's watchdog: a tiny process that demotes our announcements when the daemon dies.

A SIGKILLed daemon leaves its kernel routes behind, babeld keeps announcing
them, and the mesh keeps sending a client's replies into a tunnel whose
source the client's WireGuard no longer accepts.  So at start the daemon
forks a shell that holds a pipe from it and knows, at every moment, what to
run if the pipe closes: ``ip route replace ... proto STANDBY`` for each route
we announce.  babeld redistributes that protocol with a high metric, and a
*replaced* route reaches the neighbours in milliseconds (a deleted one takes
up to babeld's next kernel scan, about 15 s), so the mesh moves to any other
gateway's announcement at once, and keeps this one only as a last resort.
The deletion that follows is for the restarted daemon (or the unit's
``ExecStopPost=meshctl withdraw``).

A shell and ``ip`` cost about a megabyte, where a Python watchdog would cost
the interpreter, and the pipe's end is noticed the instant the kernel closes
the daemon's descriptors, whatever killed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

log = logging.getLogger("meshctl.daemon")

# Lines up to "." are the next set of commands; EOF runs the last complete set.
# `ip -force -batch -` goes on past a failing line (a route already gone).
SCRIPT = r"""
trap '' INT TERM HUP
cur=""; new=""
while IFS= read -r line; do
    if [ "$line" = "." ]; then cur="$new"; new=""; else new="$new$line
"; fi
done
[ -n "$cur" ] && printf '%s' "$cur" | ip -force -batch - >/dev/null 2>&1
exit 0
"""


def demotions(routes: list[tuple[str, str | None, str]], proto: int) -> list[str]:
    """``ip -batch`` lines that re-announce each (prefix, next hop or None, device) with ``proto``."""
    out = []
    for prefix, via, dev in routes:
        # An IPv4 route through an IPv6 next hop (babeld's own kind) needs ``via inet6``.
        hop = (f" via inet6 {via}" if ":" in via else f" via {via}") if via else ""
        out.append(f"route replace {prefix}{hop} dev {dev} proto {proto}")
    return out


class Watchdog:
    """The shell process and the pipe to it; :meth:`arm` says what to run if we die."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.armed: list[str] | None = None

    async def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", SCRIPT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=env, start_new_session=True,  # a SIGINT to our group must not end it
        )
        self.armed = []

    async def arm(self, commands: list[str]) -> None:
        """From now on, these are what runs if the daemon dies (an empty list: nothing)."""
        if self.proc is None or self.proc.stdin is None or commands == self.armed:
            return
        try:
            self.proc.stdin.write(("\n".join(commands) + ("\n" if commands else "") + ".\n").encode())
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.error("gateway watchdog is gone (%s); a crash would leave routes behind", exc)
            return
        self.armed = commands

    async def stop(self) -> None:
        """A clean stop: disarm, close the pipe, let the shell exit."""
        if self.proc is None:
            return
        await self.arm([])
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2.0)
        if self.proc.returncode is None:
            self.proc.kill()
        self.proc = None
