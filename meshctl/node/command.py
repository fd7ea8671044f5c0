"""``meshctl daemon``: its command line, its start, and the guard every command runs under.

The ``meshctl`` command (:mod:`meshctl.__main__`) reads a daemon's plain command
line here and starts it without loading :mod:`meshctl.cli`: the parser, argparse
and gettext, and every other command's code, which a router would keep for as
long as the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from meshctl.babel.errors import BabelError
from meshctl.config import DEFAULT_CONFIG, load_config
from meshctl.errors import ConfigError, MeshctlError
from meshctl.listen import parse_listen
from meshctl.node.logs import FORMATS as LOG_FORMATS
from meshctl.node.logs import REDACTOR
from meshctl.node.logs import setup as setup_logging
from meshctl.tomlfile import forget_parser

if TYPE_CHECKING:
    import argparse

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

log = logging.getLogger("meshctl")


def guarded(command: Callable[[Any], int], args: Any) -> int:
    """Run ``command(args)``; an error is one line on stderr and its exit code, never a traceback."""
    try:
        return int(command(args))
    except MeshctlError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except BabelError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # the last guard: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"meshctl: {where}{exc.strerror or errno.errorcode.get(exc.errno or 0, exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("meshctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def log_level(default: int, verbose: int) -> int:
    """``default`` (INFO for the daemon, WARNING for the rest), one step down per ``-v``."""
    return min(max(default - 10 * verbose, logging.DEBUG), logging.CRITICAL)


def start(args: argparse.Namespace | SimpleNamespace) -> int:
    """``meshctl daemon`` with its command line read: logging as asked, then the daemon, guarded."""
    setup_logging(log_level(logging.INFO, args.verbose), "json" if args.json else args.log_format, True)
    return guarded(cmd_daemon, args)


def daemon_command_line(argv: Sequence[str]) -> SimpleNamespace | None:
    """``meshctl daemon``'s own command line, read without argparse; None for any other.

    Only the plain forms are read here: ``-v``/``--verbose`` and ``--log-format`` before
    ``daemon``; ``--config``, ``--metrics`` and ``--json`` after it; every option spelled in
    full, its value the next word or after ``=``.  Anything else (``--help``, an abbreviation,
    a mistake) goes to the real parser, which answers as it always does.  The result is what
    the parser would make of the same words (tests/test_footprint.py checks it word for word).
    """
    args = SimpleNamespace(verbose=0, log_format="text", command=None)
    words = list(argv)
    i = 0
    while i < len(words) and words[i] != "daemon":  # the global options
        word = words[i]
        name, eq, value = word.partition("=")
        if word == "--verbose" or (len(word) > 1 and word == "-" + "v" * (len(word) - 1)):
            args.verbose += 1 if word == "--verbose" else len(word) - 1
        elif name == "--log-format":
            if not eq:
                i += 1
                value = words[i] if i < len(words) else ""
            if value not in LOG_FORMATS:
                return None
            args.log_format = value
        else:
            return None
        i += 1
    if i == len(words):
        return None
    args.command, args.config, args.metrics, args.json, args.func = "daemon", DEFAULT_CONFIG, None, False, cmd_daemon
    for_value = None
    for word in words[i + 1:]:
        if for_value is not None:
            if word.startswith("-"):
                return None
            setattr(args, for_value, word)
            for_value = None
            continue
        name, eq, value = word.partition("=")
        if name in ("--config", "--metrics"):
            if eq:
                setattr(args, name[2:], value)
            else:
                for_value = name[2:]
        elif word == "--json":
            args.json = True
        else:
            return None
    return None if for_value is not None else args


def cmd_daemon(args: argparse.Namespace | SimpleNamespace) -> int:
    """Run the daemon in the foreground until SIGTERM or SIGINT; SIGHUP re-reads the config."""
    import signal

    from meshctl.node.daemon import Daemon, wait_for_children_without_threads
    from meshctl.node.sockets import instance_lock

    config = load_config(args.config)  # refuses a broken config before touching anything
    forget_parser()
    for key in config.private_keys():
        REDACTOR.add(key)
    if args.metrics:
        try:
            parse_listen(args.metrics)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--metrics") from None
    lock = instance_lock(config.control_socket)  # a second daemon stops here, before it touches anything

    async def run() -> None:
        wait_for_children_without_threads()
        daemon = Daemon(config, metrics=args.metrics)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.warning("meshctl daemon for %s stopped", config.name)

    try:
        asyncio.run(run())
    finally:
        os.close(lock)
    return 0
