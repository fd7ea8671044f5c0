"""Files that come with meshctl: topologies, contrib/ (systemd unit, example config, completions, man page)
and the babeld.conf fragment.

In a source checkout (and an editable install) they sit beside the package;
in a wheel the build copies them into ``meshctl/data/`` (see pyproject.toml),
so an installed meshctl finds them without the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
ROOTS = (_PACKAGE / "data", _PACKAGE.parent)  # wheel first, then the checkout
_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # a lab name, as topology files spell them
COMPLETIONS = {"bash": ("contrib", "completion", "meshctl.bash"), "zsh": ("contrib", "completion", "_meshctl")}
MANPAGE = ("contrib", "meshctl.1")


def shipped(*parts: str) -> Path | None:
    """The shipped file or folder at ``parts`` (e.g. ``"contrib", "meshctl.service"``), or None."""
    for root in ROOTS:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    return None


def topology(name: str) -> Path | None:
    """The shipped topology called ``name`` (``seed`` -> ``topologies/seed.toml``), or None."""
    return shipped("topologies", f"{name}.toml") if _NAME.match(name) else None


def topologies() -> list[str]:
    """The names of the shipped topologies."""
    folder = shipped("topologies")
    return sorted(p.stem for p in folder.glob("*.toml")) if folder else []


def completion(shell: str) -> Path:
    """The completion script for ``shell`` (bash or zsh)."""
    path = shipped(*COMPLETIONS[shell])
    if path is None:
        raise FileNotFoundError(f"no {shell} completion shipped with this meshctl")
    return path
