"""Where the chunks of a campaign run: in this process or on any ``concurrent.futures.Executor``.

Functions travel to workers as cloudpickle bytes, so models and simulators defined in
``__main__``, closures and lambdas work on process pools and dask alike.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import TypeVar

import cloudpickle
import torch

__all__ = ["map_unordered", "resolve_executor"]

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def resolve_executor(executor=None, workers: int | None = None) -> Iterator[Executor | None]:
    """The executor to run on: ``executor`` as given, a dask ``Client``'s executor, a pool of
    ``workers`` local processes (shut down on exit), or ``None`` for this process."""
    if executor is not None and workers is not None:
        raise ValueError("give either executor= or workers= (a local process pool), not both")
    if workers is not None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
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


def map_unordered(fn: Callable[[T], R], items: Sequence[T], executor: Executor | None) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, in order of completion.

    With ``executor=None`` the calls run here, in order. Otherwise ``fn`` is cloudpickled once
    and every item is submitted; when the caller stops early (an error), the calls not yet
    started are cancelled.
    """
    if executor is None:
        for item in items:
            yield item, fn(item)
        return
    blob = cloudpickle.dumps(fn)
    futures = {executor.submit(_call, blob, item): item for item in items}
    try:
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        for future in futures:
            future.cancel()


@functools.lru_cache(maxsize=4)
def _loads(blob: bytes):
    return cloudpickle.loads(blob)


def _call(blob: bytes, item):
    """Run on a worker: the function from its cloudpickle bytes (unpickled once per worker)."""
    return _loads(blob)(item)


def _one_thread() -> None:
    """Worker initializer: parallelism comes from the processes, not from torch's threads."""
    torch.set_num_threads(1)
