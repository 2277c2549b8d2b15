"""Two halves of one job on two cores: the second half in a forked child, the first here.

Used only for large sheets, where it pays for the fork. If the child fails in any way, its half
is done here instead, so the answer never depends on whether the second core helped.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import TypeVar

First = TypeVar("First")
Second = TypeVar("Second")


def can_fork() -> bool:
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1


def both(first: Callable[[], First], second: Callable[[], Second]) -> tuple[First, Second]:
    """``(first(), second())``, with ``second`` running in a forked child while ``first`` runs here."""
    if not can_fork():
        return first(), second()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: do its half, send it back, and leave without running any cleanup
        status = 1
        try:
            os.close(reader)
            with os.fdopen(writer, "wb") as out:
                out.write(pickle.dumps(second(), protocol=pickle.HIGHEST_PROTOCOL))
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    try:
        mine = first()
    finally:
        with os.fdopen(reader, "rb") as incoming:
            sent = incoming.read()
        _, status = os.waitpid(child, 0)
    try:
        if status != 0:
            raise ChildProcessError("the second half failed in the child")
        theirs = pickle.loads(sent)
    except Exception:
        theirs = second()
    return mine, theirs
