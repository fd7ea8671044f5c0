"""Reading TOML files with errors that name the file, line and field."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from meshctl.errors import ConfigError

_LINE = re.compile(r"\(at line (\d+)")


def load_toml(path: str) -> dict[str, Any]:
    """Parse a TOML file or raise :class:`ConfigError` naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("no such file", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=path) from None
    except tomllib.TOMLDecodeError as exc:
        match = _LINE.search(str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", source=path, line=int(match.group(1)) if match else None
        ) from None


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
