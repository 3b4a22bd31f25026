"""Run one piece of pure-Python work in a forked child, for a second core on a single audit.

Why fork and not a process pool: the parsed libcst trees cost more to pickle than to analyze;
a forked child shares them copy-on-write and sends back only its small result. Whatever goes
wrong in the child comes back as ``None`` and the caller does the work itself, so the child
can make an audit faster but never different.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Generic, TypeVar

Result = TypeVar("Result")


class ForkedWork(Generic[Result]):
    """A child computing ``work()``; ``result()`` waits for it (None when it failed)."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self._pid = pid
        self._read_fd = read_fd

    def result(self) -> Result | None:
        try:
            with os.fdopen(self._read_fd, "rb") as pipe:
                return pickle.load(pipe)  # written by our own child, from our own objects
        except Exception:  # noqa: BLE001 — nothing or a truncated write (the child failed or was killed)
            return None
        finally:
            os.waitpid(self._pid, 0)


def start_forked(work: Callable[[], Result]) -> ForkedWork[Result] | None:
    """Fork a child running ``work``; None where fork is unavailable or refused."""
    if not hasattr(os, "fork"):
        return None
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: compute, write, and leave without running the parent's exit code
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as pipe:
                pickle.dump(work(), pipe, protocol=pickle.HIGHEST_PROTOCOL)
            os._exit(0)
        finally:  # whatever went wrong: the parent redoes the work
            os._exit(1)
    os.close(write_fd)
    return ForkedWork(pid, read_fd)
