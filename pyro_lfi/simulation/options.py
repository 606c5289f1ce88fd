"""How a simulation campaign runs, as one object passed whole (not what it simulates: the
model, its arguments, the seed and fixed parameters are the campaign's content)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["SimulationOptions"]


@dataclass(frozen=True)
class SimulationOptions:
    """Options of :func:`~pyro_lfi.simulate` (and of ``NPE.run``, ``SNPE.run``, predictive and
    calibration simulations). Every field can also be passed to those functions as a keyword
    of its own, as a shorthand.

    :ivar batch_size: rows per vectorized model call; also the unit of work sent to a worker
        and written to the store. ``None``: ``num_simulations /``
        :data:`~pyro_lfi.simulation.plan.MIN_BATCHES` rows, but at least
        :data:`~pyro_lfi.simulation.plan.MIN_BATCH_ROWS` and at most as many as hold
        :data:`~pyro_lfi.simulation.plan.BATCH_BYTES` of site values. Pass a number when the
        simulator needs much more memory per row than its outputs take.
    :ivar progress: show a progress bar (simulations per second, failures, time left).
    :ivar executor: run the batches on a :class:`concurrent.futures.Executor` (a process pool,
        ``dask.distributed.Client.get_executor()``, a thread pool) or a dask ``Client``; the
        model is shipped with cloudpickle. ``None``: this process. Pyro's effect handlers are
        global to a process, so on threads the batches take turns.
    :ivar workers: shorthand for a pool of this many local worker processes.
    :ivar store: a directory; each finished batch is written there atomically as NetCDF, and
        running again resumes: only the missing batches run (see :mod:`pyro_lfi.simulation.store`
        for what is checked, the lock and the repair of damaged files).
    :ivar timeout: seconds one simulation may take. A batch runs in a forked child process
        killed after ``timeout * rows``; a killed batch is re-run row by row, each row with
        ``timeout`` seconds, and rows that still run over are marked ``Status.TIMEOUT``.
    :ivar isolate: run every batch in a forked child process (implied by ``timeout``), so that
        a simulator that crashes its process (a segfault in foreign code) loses only its row,
        marked ``Status.EXCEPTION``. Batches whose worker process died are re-run this way
        automatically.
    :ivar force: resume a ``store`` even though the model's or simulator's code, the prior, the
        arguments or the fixed parameters changed (the sites, shapes, seed and batching must
        still agree). Only for changes that do not alter the rows.
    """

    batch_size: int | None = None
    progress: bool = True
    executor: Any = None
    workers: int | None = None
    store: str | os.PathLike | None = None
    timeout: float | None = None
    isolate: bool = False
    force: bool = False

    def __post_init__(self):
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a positive int, got {self.workers!r}")
        if self.executor is not None and self.workers is not None:
            raise ValueError("give either executor= or workers= (a local process pool), not both")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}")

    @property
    def isolated(self) -> bool:
        """Whether batches run in child processes (``isolate``, or a ``timeout`` to enforce)."""
        return self.isolate or self.timeout is not None

    def updated(self, **changes) -> SimulationOptions:
        return dataclasses.replace(self, **changes)
