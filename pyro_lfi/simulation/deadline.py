"""Running a function under a wall-clock deadline in a forked child that can be killed.

A hanging simulator may be stuck in compiled code that no Python-level signal can interrupt,
and may run in a worker thread (dask) where signals cannot be delivered at all. The only
reliable way to stop it is to run it in its own process and kill that process. The child is
made with :func:`os.fork` (cheap: the model and its modules are already loaded) rather than
:mod:`multiprocessing`, because dask workers are daemonic processes, which ``multiprocessing``
forbids from having children.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Finished", "Killed", "call_with_deadline"]


@dataclass(frozen=True)
class Finished:
    """The call returned ``value`` in time."""

    value: Any


@dataclass(frozen=True)
class Killed:
    """The call did not return: it ran past the deadline (``timed_out``) or its process died."""

    timed_out: bool
    reason: str


def call_with_deadline(fn: Callable[[], Any], seconds: float | None) -> Finished | Killed:
    """Call ``fn()`` in a forked child; kill the child if it has not returned after ``seconds``
    (``None``: wait as long as it runs, e.g. to survive a simulator that crashes its process).

    ``fn``'s return value travels back by pickle; an exception it raises is re-raised here.
    """
    if not hasattr(os, "fork"):
        raise RuntimeError(
            "simulate(timeout=...) and isolate=True need os.fork, which this platform lacks; drop them"
        )
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
        os.close(read_fd)
        _child(fn, write_fd)
    os.close(write_fd)
    try:
        payload = _read_until(read_fd, pid, None if seconds is None else time.monotonic() + seconds)
    finally:
        os.close(read_fd)
    if payload is None:
        return Killed(True, f"timed out after {seconds:g} s")
    _, status = os.waitpid(pid, 0)
    if not payload:
        return Killed(False, f"simulator process died ({_describe(status)})")
    ok, value = pickle.loads(payload)
    if ok:
        return Finished(value)
    raise value


def _read_until(fd: int, pid: int, deadline: float | None) -> bytes | None:
    """Everything the child writes to ``fd``; ``None`` (child killed) if it is not done by ``deadline``."""
    parts = []
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or not select.select([fd], [], [], left)[0]):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        data = os.read(fd, 1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _child(fn: Callable[[], Any], fd: int) -> None:  # pragma: no cover - runs in the child
    code = 0
    try:
        torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork
        try:
            payload = pickle.dumps((True, fn()))
        except BaseException as err:
            try:
                payload = pickle.dumps((False, err))
            except Exception:
                text = "".join(traceback.format_exception(err))
                payload = pickle.dumps((False, RuntimeError(f"simulation raised (unpicklable error):\n{text}")))
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(payload)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
