"""A ``particle-dissect sniff`` subprocess for the live tests, its output read as it comes."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


class SniffProcess:
    """``COMMAND ARGS`` in a subprocess; stdout and stderr lines collected by two threads."""

    def __init__(
        self, command: Sequence[str], *args: str | os.PathLike[str], wait: float = 10.0
    ) -> None:
        self.wait = wait
        self.proc = subprocess.Popen(
            [*command, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            text=True,
            encoding="utf-8",
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.err)

    def wait_for(self, what: str, test: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``test()`` holds; fail naming ``what`` on timeout or process end."""
        limit = self.wait if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._changed:
            while not test():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self._changed.wait(0.2)  # the last lines of an ended process
                    if test():
                        return
                    pytest.fail(
                        f"sniff: no {what} within {limit} s (stderr: {''.join(self.err)!r})"
                    )
                self._changed.wait(min(left, 0.5))

    def wait_listening(self) -> None:
        self.wait_for("'listening' line", lambda: any("listening on" in s for s in self.err))

    def records(self) -> list[dict[str, Any]]:
        with self._changed:
            return [json.loads(line) for line in self.out]

    def finish(self, sig: int | None = None, timeout: float | None = None) -> int:
        """Signal the process (optionally), wait for its end and for every output line."""
        limit = self.wait if timeout is None else timeout
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"sniff did not end within {limit} s (stderr: {self.stderr!r})")
        for pump in self._pumps:
            pump.join(5)  # every line the process wrote has been read
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
