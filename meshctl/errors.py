"""meshctl's one exception root.

Every error meshctl raises on purpose derives from :class:`MeshctlError`; the
CLI turns each into one line on stderr and an exit code (``exit_code``).
"""

from __future__ import annotations


class MeshctlError(Exception):
    """Root of meshctl's errors."""

    exit_code = 1


class ConfigError(MeshctlError):
    """A config or topology file is wrong.  Names the file and field."""

    exit_code = 2

    def __init__(self, message: str, *, source: str = "", field: str = "", line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.field = field
        self.line = line
        where = source
        if line is not None:
            where += f":{line}"
        if field:
            where = f"{where}: {field}" if where else field
        self.problems: list[ConfigError] = [self]
        super().__init__(f"{where}: {message}" if where else message)

    @classmethod
    def collect(cls, errors: list[ConfigError]) -> ConfigError:
        """One error standing for several; its text lists them all, one per line."""
        if len(errors) == 1:
            return errors[0]
        combined = cls(f"{len(errors)} problems:\n  " + "\n  ".join(str(e) for e in errors))
        combined.problems = list(errors)
        return combined


class Refused(MeshctlError):
    """A datagram was refused; ``reason`` is a short label to count it under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class LabError(MeshctlError):
    """The lab could not be brought up or down."""

    exit_code = 3


class PermissionDenied(MeshctlError):
    """An operation needs root."""

    exit_code = 4
