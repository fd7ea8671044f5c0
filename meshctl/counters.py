"""What went wrong at the edges, and how often: one object the runners share, read by status and metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Rejected datagrams by reason, failed WireGuard writes, failed route changes."""

    rejected: Counter[str] = field(default_factory=Counter)
    backend_errors: int = 0
    route_errors: int = 0
