"""The man page and the bash/zsh completion scripts, generated from the argparse parser.

``make manuals`` (``python -m meshctl.manuals``) writes them into contrib/,
the build ships them, and a test checks that the files match the parser.
shtab and argparse-manpage are needed here only, not to run meshctl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from meshctl import __version__
from meshctl.cli import SHELLS, build_parser
from meshctl.shipped import COMPLETIONS, MANPAGE

EXTRA_SECTIONS = {
    "files": (
        ".TP\n/etc/meshctl/node.toml\nThe node config (daemon, check\\-config). status and topology take the "
        "control socket and babeld's address from it when it exists.\n"
        ".TP\n/run/meshctl/meshctl.sock\nThe daemon's control socket (status, topology \\-\\-mesh).\n"
        ".TP\n/run/meshctl/lab/TAG/\nA lab's state, keys, node configs and logs."
    ),
    "exit status": (
        ".TP\n0\nok\n.TP\n1\nrun\\-time failure: babeld or the daemon unreachable, a lab process died\n"
        ".TP\n2\nbad usage, or a bad config or topology file (the message names the file, line and field)\n"
        ".TP\n3\nthe lab could not be built or removed\n.TP\n4\nneeds root"
    ),
}


def _fixed_width() -> None:
    """argparse wraps usage lines to the terminal: generate for 80 columns wherever it runs."""
    os.environ["COLUMNS"] = "80"


def completion(shell: str) -> str:
    """The completion script for ``shell``, by shtab."""
    import shtab

    _fixed_width()
    return str(shtab.complete(build_parser(), shell=shell))


def manpage() -> str:
    """meshctl(1), by argparse-manpage: every command, its options and its description."""
    from argparse_manpage.manpage import Manpage

    _fixed_width()
    parser = build_parser()
    parser._manpage = [{"heading": k, "content": v} for k, v in EXTRA_SECTIONS.items()]  # type: ignore[attr-defined]
    page = Manpage(parser)
    page.date = ""  # the page changes with the parser, not with the day it was built
    page.source = f"meshctl {__version__}"
    page.manual = "meshctl manual"
    page.description = "Babel-over-WireGuard mesh controller"
    return str(page)


def generated() -> dict[tuple[str, ...], str]:
    """Each generated file (as a path under the checkout) and its text."""
    files: dict[tuple[str, ...], str] = {COMPLETIONS[shell]: completion(shell) for shell in SHELLS}
    files[MANPAGE] = manpage()
    return files


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    for parts, text in generated().items():
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
