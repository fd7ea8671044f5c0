"""Debian's headless Chromium for the map tests: one-shot DOM dumps, and a live page over the DevTools pipe.

The live page is driven through ``--remote-debugging-pipe`` (DevTools
messages, NUL-separated JSON, on descriptors 3 and 4), so the tests need no
WebSocket client and open no debugging port.  Every browser gets a fresh
profile and the flags that keep it off the network (this machine has none
but loopback, and Chromium's background services would keep trying).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str | None:
    """Debian's chromium, if installed (./bootstrap installs it)."""
    return shutil.which("chromium")


def dump_dom(url: str, budget_ms: int = 4000, size: str = "1200,900") -> str:
    """The page's DOM after its scripts ran for ``budget_ms`` of virtual time."""
    with tempfile.TemporaryDirectory(prefix="meshctl-chromium-") as profile:
        out = subprocess.run([chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                              f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=90, check=True)
    return out.stdout


class Browser:
    """One headless Chromium driven over the DevTools pipe; ``prefix`` runs it elsewhere (``ip netns exec NS``)."""

    def __init__(self, prefix: tuple[str, ...] = (), size: tuple[int, int] = (1400, 1000)) -> None:
        self.profile = tempfile.mkdtemp(prefix="meshctl-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child, before exec: DevTools reads fd 3 and writes fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [*prefix, chromium() or "chromium", *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={size[0]},{size[1]}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False,  # noqa: PLW1509 - single-threaded test process
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.session = ""

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser (ours, by its PID) and remove its profile."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0,
             session: bool = True) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer (events in between are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError(f"{method}: no answer within {timeout:g} s")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser went away")
            self._buffer += chunk

    def open(self, url: str) -> None:
        """A new tab on ``url``, which later calls talk to."""
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path: str) -> None:
        """A PNG of the page as it is drawn now."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
