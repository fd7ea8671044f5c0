"""The ``meshctl`` command (and ``python -m meshctl``).

A daemon's plain command line (``meshctl daemon --config FILE``, as the systemd
unit and the lab run it) starts the daemon without loading :mod:`meshctl.cli`;
anything else goes there.  A router keeps whatever its daemon loaded for as long
as the daemon runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meshctl`` with ``argv`` (the process's arguments by default); return its exit code."""
    from meshctl.node.command import daemon_command_line, start

    words = list(sys.argv[1:] if argv is None else argv)
    args = daemon_command_line(words)
    if args is not None:
        return start(args)
    from meshctl.cli import main as cli_main

    return cli_main(words)


if __name__ == "__main__":
    sys.exit(main())
