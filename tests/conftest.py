"""Shared fixtures: captured babeld output lives in babel/captured/, other fixtures in tests/static/."""

from __future__ import annotations

import os

import pytest

STATIC = os.path.join(os.path.dirname(__file__), "static")
CAPTURED = os.path.join(os.path.dirname(__file__), "..", "babel", "captured")


def static_path(name: str) -> str:
    """Path of a captured fixture."""
    return os.path.join(STATIC, name)


def read_static(name: str) -> bytes:
    """Bytes of a fixture in tests/static/."""
    with open(static_path(name), "rb") as f:
        return f.read()


def read_captured(name: str) -> bytes:
    """Bytes of babeld output captured from a real babeld (babel/captured/)."""
    with open(os.path.join(CAPTURED, name), "rb") as f:
        return f.read()


@pytest.fixture
def real_dump() -> bytes:
    """A dump captured from babeld 1.12.1 on the seed lab's client."""
    return read_captured("babeld-1.12.1-dump.txt")


@pytest.fixture
def real_monitor() -> bytes:
    """A monitor session captured while the client's link to gw2 was cut."""
    return read_captured("babeld-1.12.1-monitor-linkcut.txt")
