"""A simulation campaign: the model run forward in batches, each under a seed derived from the
campaign seed, here or on workers, optionally streamed to a resumable store."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .batch_plan import BatchPlan
from .executors import map_unordered, resolve_executor
from .seeding import derived_seed
from .simulations import Simulations
from .store import SimulationStore

__all__ = ["simulate"]


def simulate(
    model,
    num_simulations: int,
    *args,
    seed: int | None = None,
    batch_size: int | None = None,
    observed: str | Sequence[str] | None = None,
    parameters: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    executor=None,
    workers: int | None = None,
    store: str | os.PathLike | None = None,
    timeout: float | None = None,
    **kwargs,
) -> Simulations:
    """Simulate ``model(*args, **kwargs)`` ``num_simulations`` times.

    The model runs vectorized under a :class:`pyro.plate` of ``batch_size`` rows at a time, with
    its observed sites un-conditioned, so every latent site is drawn from the prior and every
    data site from the simulator. A batch whose simulator raises is re-run row by row so that
    only the failing rows are lost; those rows, rows with NaN or inf outputs and rows that ran
    past ``timeout`` are kept with their parameters and marked invalid (see
    :class:`~pyro_lfi.simulations.Status` and :meth:`~pyro_lfi.Simulations.summary`).

    Batch ``c`` (rows ``c * batch_size`` onwards) runs under its own seed derived from
    ``(seed, c)``: the same seed and batch size give the same simulations on any executor and
    any number of workers, and the global RNG state is left untouched.

    :param model: a Pyro model whose data sites are :class:`~pyro_lfi.Simulator` sites.
    :param num_simulations: number of rows.
    :param seed: campaign seed (drawn at random and recorded if omitted; read from ``store``
        when resuming).
    :param batch_size: rows per vectorized model call; also the unit of work sent to a worker
        and written to the store. ``None`` (default): as many rows as hold :data:`~pyro_lfi.batch_plan.BATCH_BYTES` of
        site values (a million rows of a few numbers run as one call, long traces in smaller
        batches), and at most ``num_simulations /`` :data:`~pyro_lfi.batch_plan.MIN_BATCHES` when the batches run on
        workers, go to a store or have a ``timeout``, so that they spread over the workers and
        an interrupted campaign keeps most of its work. Pass a number when the simulator needs
        much more memory per row than its outputs take.
    :param observed: which observed sites to un-condition (default: all of them). Latent sites
        fixed with :func:`pyro.condition` count as observed; fix them with :func:`pyro.poutine.do`
        to keep them fixed here.
    :param parameters: fixed values of latent sites, ``[num_simulations, *site_shape]`` each
        (e.g. posterior draws for predictive simulations, or a sequential proposal); the other
        latent sites are drawn from the prior given them.
    :param progress: show a progress bar (simulations per second, failures, time left).
    :param executor: run the batches on a :class:`concurrent.futures.Executor` (a process
        pool, ``dask.distributed.Client.get_executor()``) or a dask ``Client``; the model is
        shipped with cloudpickle. Default: this process.
    :param workers: shorthand for a pool of this many local worker processes.
    :param store: a directory; each finished batch is written there atomically as NetCDF (see
        :mod:`pyro_lfi.store`), and calling again with the same arguments resumes: only the
        missing batches run.
    :param timeout: seconds one simulation may take. A batch runs in a forked child process
        killed after ``timeout * rows``; a killed batch is re-run row by row, each row with
        ``timeout`` seconds, and rows that still run over are marked ``Status.TIMEOUT``.
    """
    if num_simulations < 1:
        raise ValueError(f"num_simulations must be positive, got {num_simulations}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if seed is None and store is not None:
        seed = (SimulationStore.read_manifest(store) or {}).get("seed") if Path(store).is_dir() else None
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    plan = BatchPlan.probe(model, observed, seed, args, kwargs)
    parameters = plan.check_parameters(parameters or {}, num_simulations)
    if batch_size is None:
        spread = executor is not None or workers is not None or store is not None or timeout is not None
        batch_size = plan.default_batch_size(num_simulations, spread)
    chunks = [
        _Chunk(c, start, min(batch_size, num_simulations - start), derived_seed(seed, c))
        for c, start in enumerate(range(0, num_simulations, batch_size))
    ]
    disk = None if store is None else SimulationStore(
        store, plan.manifest(seed, num_simulations, batch_size, parameters)
    )
    parts = {c: disk.read(c) for c in disk.completed()} if disk else {}
    todo = [c.with_parameters(parameters) for c in chunks if c.index not in parts]
    job = _Job(plan, args, kwargs, timeout)
    done = sum(len(p) for p in parts.values())
    failed = sum(len(p) - p.num_valid for p in parts.values())
    with (
        tqdm(total=num_simulations, initial=done, unit="sim", disable=not progress, desc="simulate") as bar,
        resolve_executor(executor, workers) as pool,
    ):
        bar.set_postfix(failed=failed)
        for chunk, sims in map_unordered(job, todo, pool):
            sims.seed = seed
            if disk:
                disk.write(chunk.index, sims)
            parts[chunk.index] = sims
            failed += len(sims) - sims.num_valid
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(len(sims))
    sims = Simulations.concat([parts[c.index] for c in chunks])
    sims.seed = seed
    if sims.num_valid == 0:
        warnings.warn(f"all {len(sims)} simulations are invalid: {sims.message[0]}", stacklevel=2)
    return sims


@dataclass(frozen=True)
class _Chunk:
    """One batch of a campaign: rows ``start:start + size`` under seed ``seed``."""

    index: int
    start: int
    size: int
    seed: int
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)

    def with_parameters(self, parameters: dict[str, torch.Tensor]) -> _Chunk:
        rows = slice(self.start, self.start + self.size)
        return replace(self, fixed={n: v[rows] for n, v in parameters.items()})


@dataclass(frozen=True)
class _Job:
    """What a worker does with a chunk: run the model on it (under a deadline if ``timeout``)."""

    plan: BatchPlan
    args: tuple
    kwargs: dict
    timeout: float | None

    def __call__(self, chunk: _Chunk) -> Simulations:
        if self.timeout is None:
            return self.plan.run(chunk.size, chunk.seed, chunk.fixed, self.args, self.kwargs)
        return self.plan.run_with_deadline(chunk.size, chunk.seed, chunk.fixed, self.args, self.kwargs, self.timeout)
