"""One call in a thread of its own (the sheet's read, while the main thread loads the rest of the tool),
and two signals that keep it off a shared core on a 2-core machine.

- ``begun()``: the read says its long part has begun (calamine's parse, an HTTP request: work outside
  Python's lock). Until then the main thread waits (:meth:`InBackground.settle`): the imports it would
  start hold the lock, and the read's first few steps (3 ms alone) took 50 ms beside them.
- ``when_idle()``: a helper of the read (the scan of the sheet's XML for error cells) waits until the
  main thread has loaded what it needs and waits for the read itself, so that three busy threads never
  share two cores (calamine's parse was 0.07 s slower among three).

A read that is not in an InBackground (a test, a write-back's check) has no one to signal and never
waits. Each wait is bounded, so a read that never signals, or a main thread that never waits, only
loses the ordering, never the work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

SETTLE_SECONDS = 0.1  # the longest the main thread waits for the read to begin its long part
IDLE_SECONDS = 5.0  # the longest a helper of the read waits for the main thread to be idle

_current = threading.local()  # in a background thread: its InBackground


class InBackground:
    """One call run in a thread of its own; ``result()`` waits for it and raises what it raised."""

    def __init__(self, call: Callable[[], Any], name: str = "homevisits-read") -> None:
        self._call = call
        self._outcome: tuple[bool, Any] = (False, None)
        self._begun = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _current.work = self
        try:
            self._outcome = (True, self._call())
        except BaseException as exc:  # handed to the caller by result()
            self._outcome = (False, exc)
        finally:
            self._begun.set()  # ended, so nothing to wait for
            _current.work = None

    def settle(self, patience: float = SETTLE_SECONDS) -> None:
        """Wait until the call has begun its long part (or ended), ``patience`` seconds at most."""
        self._begun.wait(patience)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the call (``timeout`` seconds at most): from now the main thread is idle."""
        self._idle.set()
        self._thread.join(timeout)

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> Any:
        self.wait()
        finished, value = self._outcome
        if not finished:
            raise value
        return value


def begun() -> None:
    """Called by a read as its long part begins (nothing happens outside an InBackground)."""
    work = getattr(_current, "work", None)
    if work is not None:
        work._begun.set()


def when_idle() -> Callable[[], None]:
    """Called by a read as it starts a helper thread: what the helper calls first, to wait until the
    main thread is idle (``IDLE_SECONDS`` at most). Outside an InBackground it returns at once."""
    work = getattr(_current, "work", None)

    def ready() -> None:
        if work is not None:
            work._idle.wait(IDLE_SECONDS)

    return ready
