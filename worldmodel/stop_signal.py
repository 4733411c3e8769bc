"""A clean stop for long loops: Ctrl-C or SIGTERM asks the loop to stop at its next safe point
(after the current update, with a checkpoint written) instead of killing it mid-write."""
from __future__ import annotations

from typing import Any


class StopSignal:
    """Ctrl-C / SIGTERM while training: finish the update, save a checkpoint, then raise
    KeyboardInterrupt. A second Ctrl-C interrupts at once (the checkpoint on disk stays whole)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopSignal":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
