"""Run a command under the system-call filter of contrib/meshctl.service, as systemd would.

Usage (Debian's python3 with python3-seccomp): ``sandbox_exec.py UNIT -- COMMAND...``.  The allow list is
the unit's SystemCallFilter= lines, expanded by ``systemd-analyze syscall-filter``; a call outside it
fails with the unit's SystemCallErrorNumber=.  The filter survives exec, so COMMAND and its children run
under it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys

import seccomp  # python3-seccomp (Debian): libseccomp's own bindings


def expand(group: str, seen: set[str]) -> set[str]:
    """A syscall or @group, as a set of syscall names."""
    if not group.startswith("@"):
        return {group}
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True)
    calls: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            calls |= expand(word, seen)
    return calls


def allowed(unit: str) -> tuple[set[str], int]:
    allow: set[str] = set()
    deny: set[str] = set()
    number = errno.EPERM
    with open(unit) as f:
        lines = f.read().splitlines()
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            target = deny if value.startswith("~") else allow
            for word in value.lstrip("~").split():
                target |= expand(word, set())
        elif key == "SystemCallErrorNumber":
            number = getattr(errno, value)
    return allow - deny, number


def main() -> None:
    unit, sep, *command = sys.argv[1:]
    assert sep == "--" and command
    calls, number = allowed(unit)
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(number))
    for name in sorted(calls):
        with contextlib.suppress(RuntimeError, ValueError):  # a name this kernel or libseccomp does not know
            f.add_rule(seccomp.ALLOW, name)
    f.load()  # sets no_new_privs as well
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
