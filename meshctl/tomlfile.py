"""Reading TOML files with errors that name the file, line and field."""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from typing import Any

from meshctl.errors import ConfigError

# Patterns, not compiled ones: they are needed only to place an error, and re compiles (and caches)
# them then; a daemon that reads a good config does not pay for them at every start.
_LINE = r"\(at line (\d+)"
_HEADER = r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$"
_KEY = r"^\s*([A-Za-z0-9_\-]+)\s*="
_INDEX = r"\[\d+\]$"


_KINDS = {stat.S_IFDIR: "directory", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device"}


def not_regular(path: str) -> str | None:
    """Why ``path`` is no file to read (``"is a FIFO, not a regular file"``), or None.

    Checked before opening: a FIFO named as a config or key file would hang
    the reader until someone writes to it.  A missing or unreadable path is
    left to the reader to report.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return f"is a {_KINDS.get(stat.S_IFMT(mode), 'special file')}, not a regular file"


def load_toml(path: str) -> dict[str, Any]:
    """Parse a TOML file or raise :class:`ConfigError` naming it (and the line, where there is one)."""
    problem = not_regular(path)
    if problem:
        raise ConfigError(problem, source=path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("no such file", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); TOML files are UTF-8",
                          source=path, line=line) from None
    import tomllib  # here, so that forget_parser() can let it go

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(_LINE, str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", source=path, line=int(match.group(1)) if match else None
        ) from None


def forget_parser() -> None:
    """Let tomllib go (0.1 MB resident: its code and patterns); the next :func:`load_toml` loads it again.

    A daemon reads its config at start and on SIGHUP, and runs for months in
    between.  tomllib keeps no state, and only :func:`load_toml` refers to it.
    """
    for name in [m for m in sys.modules if m == "tomllib" or m.startswith("tomllib.")]:
        del sys.modules[name]


def field_lines(text: str) -> dict[str, int]:
    """Map field paths (``uplink[0].gateway[1].public_key``) to the line that sets them.

    tomllib keeps no positions, so this walks the text: table headers
    (``[node]``, ``[[uplink]]``, ``[[uplink.gateway]]``, counting array entries
    per parent) and ``key =`` lines.  Best effort: inline tables and dotted
    keys are not followed, and a field it cannot place gets its table's line.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(_HEADER, line)
        if header:
            parts = [p.strip() for p in header.group(2).split(".")]
            path = ""
            for part in parts[:-1]:  # parents: the latest entry of each array
                path = f"{path}.{part}" if path else part
                if path in counts:
                    path = f"{path}[{counts[path] - 1}]"
            path = f"{path}.{parts[-1]}" if path else parts[-1]
            if header.group(1) == "[[":
                counts[path] = counts.get(path, 0) + 1
                path = f"{path}[{counts[path] - 1}]"
            table = path
            lines.setdefault(table, number)
            continue
        key = re.match(_KEY, line)
        if key:
            lines.setdefault(f"{table}.{key.group(1)}" if table else key.group(1), number)
    return lines


def locate(field: str, lines: dict[str, int]) -> int | None:
    """The line for ``field``, else for its closest enclosing key or table."""
    while field:
        if field in lines:
            return lines[field]
        trimmed = re.sub(_INDEX, "", field)
        field = trimmed if trimmed != field else field.rpartition(".")[0]
    return None


def with_lines(error: ConfigError, path: str) -> ConfigError:
    """The same problems, each with the line of ``path`` that its field is on (where one can be found)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = field_lines(f.read())
    except OSError:
        return error
    problems = [
        p if p.line is not None or not p.field else ConfigError(p.message, source=p.source, field=p.field,
                                                                  line=locate(p.field, lines))
        for p in error.problems
    ]
    return ConfigError.collect(problems)


class Fields:
    """Typed access to one TOML table, collecting errors with field paths.

    ``take`` pops a key so that :meth:`finish` can flag unknown keys: a typo
    in a config should be an error, not a silently ignored setting.
    """

    def __init__(self, table: Any, path: str, source: str, errors: list[ConfigError]) -> None:
        self.path = path
        self.source = source
        self.errors = errors
        if not isinstance(table, dict):
            self.error("", f"must be a table, not {type(table).__name__}")
            table = {}
        self._table = dict(table)

    def error(self, key: str, message: str) -> None:
        """Record one problem at ``path.key``."""
        field = f"{self.path}.{key}" if self.path and key else (key or self.path)
        self.errors.append(ConfigError(message, source=self.source, field=field))

    def take(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        """Pop ``key`` checking its type; record an error and return ``default`` if wrong."""
        if key not in self._table:
            if required:
                self.error(key, "missing")
            return default
        value = self._table.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python, never in a config.
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            ok = True
        else:
            ok = isinstance(value, kinds)
        # TOML has nan and inf; no setting of ours means either (a hold of nan never expires).
        if ok and isinstance(value, float) and not math.isfinite(value):
            self.error(key, f"must be a finite number, not {value}")
            return default
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            self.error(key, f"must be {names}, not {type(value).__name__} ({value!r})")
            return default
        return value

    def take_list(self, key: str, item: type, default: list | None = None, required: bool = False) -> list:
        """Pop a list of ``item``; record errors per element."""
        value = self.take(key, list, None, required)
        if value is None:
            return list(default or [])
        out = []
        for i, element in enumerate(value):
            if isinstance(element, item) and not (isinstance(element, bool) and item is not bool):
                out.append(element)
            else:
                self.error(f"{key}[{i}]", f"must be {item.__name__}, not {type(element).__name__}")
        return out

    def rest(self) -> dict[str, Any]:
        """Keys not taken yet (and forget them)."""
        rest, self._table = self._table, {}
        return rest

    def finish(self) -> None:
        """Flag every key nobody asked for."""
        for key in sorted(self._table):
            self.error(key, "unknown key")
        self._table = {}
