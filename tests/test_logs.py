"""Log output: JSON lines carry the decision's fields; registered keys never get out."""

from __future__ import annotations

import io
import json
import logging

from meshctl.node.logs import REDACTED, JsonFormatter, RedactingHandler, Redactor
from meshctl.wireguard.keys import KeyPair


def logger_with(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test.{id(handler)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_json_lines_carry_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logger_with(handler)
    log.warning("uplink %s: %s -> %s", "wgup", "gw1", "gw2", extra={"event": "switch", "old": "gw1", "new": "gw2"})
    record = json.loads(stream.getvalue())
    assert record["msg"] == "uplink wgup: gw1 -> gw2"
    assert record["level"] == "warning" and record["event"] == "switch" and record["new"] == "gw2"
    assert record["ts"].endswith("+00:00")


def test_registered_private_keys_are_blanked_in_any_spelling() -> None:
    keys = KeyPair.generate()
    redactor = Redactor()
    redactor.add(keys.private)
    stream = io.StringIO()
    handler = RedactingHandler(redactor)
    handler.stream = stream
    handler.setFormatter(JsonFormatter())
    log = logger_with(handler)
    hexkey = __import__("base64").b64decode(keys.private).hex()
    log.error("oops %s", keys.private, extra={"request": f"private_key={hexkey}\n"})
    try:
        raise ValueError(keys.private)
    except ValueError:
        log.exception("with a traceback")
    text = stream.getvalue()
    assert keys.private not in text and hexkey not in text
    assert text.count(REDACTED) >= 3
    assert keys.public not in REDACTED


def test_keypair_repr_hides_the_private_key() -> None:
    keys = KeyPair.generate()
    assert keys.private not in repr(keys) and keys.public in repr(keys)
