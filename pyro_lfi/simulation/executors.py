"""Where the batches of a campaign run: in this process or on any ``concurrent.futures.Executor``.

Functions travel to workers as cloudpickle bytes, so models and simulators defined in
``__main__``, closures and lambdas work on process pools and dask alike.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import cloudpickle
import torch

__all__ = ["map_unordered", "recovery_executor", "resolve_executor", "worker_died"]

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def resolve_executor(executor=None, workers: int | None = None) -> Iterator[Executor | None]:
    """The executor to run on: ``executor`` as given, a dask ``Client``'s executor, a pool of
    ``workers`` local processes (shut down on exit), or ``None`` for this process (the
    arguments are checked by :class:`~pyro_lfi.SimulationOptions`)."""
    if workers is not None:
        pool = ProcessPoolExecutor(workers, initializer=_one_thread)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif executor is None or isinstance(executor, Executor):
        yield executor
    elif callable(getattr(executor, "get_executor", None)):  # a dask.distributed Client
        yield executor.get_executor()
    else:
        raise TypeError(
            f"executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor) or a "
            f"dask.distributed Client, got {type(executor).__name__}"
        )


def map_unordered(
    fn: Callable[[T], R], items: Sequence[T], executor: Executor | None, lost: list[T] | None = None
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, in order of completion.

    With ``executor=None`` the calls run here, in order. Otherwise ``fn`` is cloudpickled once
    and every item is submitted; when the caller stops early (an error), the calls not yet
    started are cancelled. With a list ``lost``, the items whose worker process died (see
    :func:`worker_died`) are appended to it instead of raising; the others still complete.
    """
    if executor is None:
        for item in items:
            yield item, fn(item)
        return
    blob = cloudpickle.dumps(fn)
    futures = {executor.submit(_call, blob, item): item for item in items}
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:
                if lost is None or not worker_died(err):
                    raise
                lost.append(futures[future])
                continue
            yield futures[future], result
    finally:
        for future in futures:
            future.cancel()


def worker_died(error: BaseException) -> bool:
    """Whether ``error`` says a worker process died (a process pool broken, dask's
    ``KilledWorker``) rather than the function raising."""
    return isinstance(error, BrokenProcessPool) or any(t.__name__ == "KilledWorker" for t in type(error).__mro__)


@contextlib.contextmanager
def recovery_executor(executor, workers: int | None) -> Iterator[Executor]:
    """Where to run again what a dead worker lost: the same dask cluster (it replaces its
    workers), else a fresh local pool of the same size (a broken pool takes no more work)."""
    if executor is not None and not isinstance(executor, ProcessPoolExecutor):
        with resolve_executor(executor) as pool:
            yield pool
        return
    size = workers or getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    with resolve_executor(workers=size) as pool:
        yield pool


@functools.lru_cache(maxsize=4)
def _loads(blob: bytes):
    return cloudpickle.loads(blob)


def _call(blob: bytes, item):
    """Run on a worker: the function from its cloudpickle bytes (unpickled once per worker)."""
    return _loads(blob)(item)


def _one_thread() -> None:
    """Worker initializer: parallelism comes from the processes, not from torch's threads."""
    torch.set_num_threads(1)
