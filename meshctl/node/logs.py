"""Logging set-up: text for people, one JSON object per line for log shippers.

Levels mean something: ERROR needs a person (a WireGuard write failed, a
route could not be set), WARNING is the mesh failing around us (a gateway
left because it died), INFO is a normal decision or state change, DEBUG is
detail.  Decisions carry structured fields (``extra={"event": "switch", ...}``)
that the JSON format emits as keys.

Private keys never reach a log call by design (they are never formatted);
:class:`RedactingHandler` is the second line of defence, replacing any registered
secret in the final text, in base64 or in the hex that UAPI uses.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
REDACTED = "<redacted>"
# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class Redactor:
    """Blanks registered secrets out of text."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, key_base64: str) -> None:
        """Register a WireGuard private key (both spellings are blanked)."""
        self.secrets.add(key_base64)
        with contextlib.suppress(binascii.Error, ValueError):
            self.secrets.add(base64.b64decode(key_base64, validate=True).hex())

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class RedactingHandler(logging.StreamHandler):
    """Scrubs the finished line (message, extras, traceback alike)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(sys.stderr)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


REDACTOR = Redactor()


def setup(level: int, fmt: str = "text", daemon: bool = False) -> None:
    """Configure the root logger once, for the CLI."""
    handler = RedactingHandler(REDACTOR)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif daemon:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("meshctl: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
