"""A simulation campaign: the model run forward in batches, each under a seed derived from the
campaign seed, here, on threads or on workers, optionally streamed to a resumable store.

The model runs vectorized under a :class:`pyro.plate` of ``batch_size`` rows at a time, with its
observed sites un-conditioned, so every latent site is drawn from the prior and every data site
from the simulator; ``pyro.deterministic`` sites are recorded too. A batch whose simulator raises
is re-run row by row so that only the failing rows are lost; those rows, rows with NaN or inf
outputs and rows that ran past ``timeout`` are kept with their parameters and marked invalid (see
:class:`~pyro_lfi.simulation.simulations.Status` and :meth:`~pyro_lfi.Simulations.summary`).

Batch ``c`` (rows ``c * batch_size`` onwards) runs under its own seed derived from ``(seed, c)``,
and the default batch size depends only on the model and ``num_simulations``: the same seed
gives the same simulations in this process, on any executor and number of workers, with or
without ``timeout``, ``isolate`` or a store, and the global RNG state is left untouched.

Before the campaign the model runs once to read its sites; a simulator whose output shape is
declared (``Simulator(..., event_shape=...)``) is not called for that, and an undeclared one is
tried at other parameters until one simulation succeeds (see :mod:`pyro_lfi.simulation.trial`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..options import split_options
from ..progress import progress_bar
from ..seeding import derived_seed
from .executors import map_unordered, recovery_executor, resolve_executor
from .options import SimulationOptions
from .plan import BatchPlan
from .simulations import Simulations
from .store import SimulationStore

__all__ = ["simulate"]


def simulate(
    model,
    num_simulations: int,
    *args,
    seed: int | None = None,
    observed: str | Sequence[str] | None = None,
    parameters: dict[str, torch.Tensor] | None = None,
    options: SimulationOptions | None = None,
    model_kwargs: dict | None = None,
    **kwargs,
) -> Simulations:
    """Simulate ``model(*args, **kwargs)`` ``num_simulations`` times, in seeded batches that
    keep failing rows (see the module docs for how a campaign runs and what it guarantees).

    :param model: a Pyro model whose data sites are :class:`~pyro_lfi.Simulator` sites.
    :param num_simulations: number of rows.
    :param seed: campaign seed (drawn at random and recorded if omitted; read from ``store``
        when resuming).
    :param observed: which observed sites to un-condition (default: all of them). Latent sites
        fixed with :func:`pyro.condition` count as observed; fix them with :func:`pyro.poutine.do`
        to keep them fixed here.
    :param parameters: fixed values of latent sites, ``[num_simulations, *site_shape]`` each
        (e.g. posterior draws for predictive simulations, or a sequential proposal); the other
        latent sites are drawn from the prior given them.
    :param options: how the campaign runs: batch size, progress bar, executor or workers, a
        resumable store, a timeout per simulation, process isolation (see
        :class:`~pyro_lfi.SimulationOptions`). Each of its fields may be given as a keyword of
        its own instead, e.g. ``simulate(model, n, workers=4, store="campaign")``.
    :param model_kwargs: keyword arguments of the model, for one whose name is an option's.
    :param kwargs: the model's keyword arguments, and option shorthands.
    """
    options, kwargs = split_options(SimulationOptions, options, kwargs, model_kwargs)
    if num_simulations < 1:
        raise ValueError(f"num_simulations must be positive, got {num_simulations}")
    seed = _campaign_seed(seed, options.store)
    plan = BatchPlan.probe(model, observed, seed, args, kwargs, options.isolated, options.timeout)
    parameters = plan.check_parameters(parameters or {}, num_simulations)
    batch_size = options.batch_size or plan.default_batch_size(num_simulations)
    batches = [
        _Batch(c, start, min(batch_size, num_simulations - start), derived_seed(seed, c))
        for c, start in enumerate(range(0, num_simulations, batch_size))
    ]
    job = _Job(plan, args, kwargs, options.timeout, options.isolated)
    disk = None if options.store is None else SimulationStore(
        options.store, plan.manifest(seed, num_simulations, batch_size, parameters), force=options.force
    )
    with disk or contextlib.nullcontext():
        parts = _read_back(disk, batches, plan) if disk else {}
        todo = [b.with_parameters(parameters) for b in batches if b.index not in parts]
        _run_with_progress(job, todo, parts, disk, options, num_simulations, seed)
    sims = Simulations.concat([parts[b.index] for b in batches])
    sims.seed = seed
    if sims.num_valid == 0:
        warnings.warn(f"all {len(sims)} simulations are invalid: {sims.message[0]}", stacklevel=2)
    return sims


def _campaign_seed(seed: int | None, store) -> int:
    """The given seed, else the one a ``store`` being resumed recorded, else a fresh one."""
    if seed is None and store is not None:
        manifest = SimulationStore.read_manifest(store) if Path(store).is_dir() else None
        seed = (manifest or {}).get("campaign", {}).get("seed")
    return int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else seed


def _run_with_progress(
    job: _Job, todo: list[_Batch], parts: dict, disk, options: SimulationOptions, total: int, seed: int
) -> None:
    """Run the batches ``todo`` into ``parts`` (and ``disk``) under a progress bar."""
    done = sum(len(p) for p in parts.values())
    failed = sum(len(p) - p.num_valid for p in parts.values())
    with progress_bar(total=total, initial=done, unit="sim", disable=not options.progress, desc="simulate") as bar:
        bar.set_postfix(failed=failed)
        for batch, sims in _run_batches(job, todo, options.executor, options.workers):
            sims.seed = seed
            if disk:
                disk.write(batch.index, sims)
            parts[batch.index] = sims
            failed += len(sims) - sims.num_valid
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(len(sims))


def _read_back(disk: SimulationStore, batches: list[_Batch], plan: BatchPlan) -> dict[int, Simulations]:
    """The batches a store already holds; a file that cannot be read back, or holds other rows
    than its batch should, is quarantined, so that its batch is simulated again."""
    parts = {}
    for index in disk.completed():
        if index >= len(batches):
            continue
        try:
            sims = disk.read(index)
            problem = _mismatch(sims, batches[index], plan)
        except Exception as err:
            problem = f"{type(err).__name__}: {err}"
        if problem:
            moved = disk.quarantine(index)
            warnings.warn(
                f"batch {index} of the store {str(disk.path)!r} could not be read back ({problem}); the file was "
                f"moved to {str(moved)!r} and the batch is simulated again under its own seed",
                stacklevel=3,
            )
        else:
            parts[index] = sims
    return parts


def _mismatch(sims: Simulations, batch: _Batch, plan: BatchPlan) -> str:
    if len(sims) != batch.size:
        return f"{len(sims)} rows instead of {batch.size}"
    if set(sims.values) != set(plan.layout.recorded):
        return f"sites {sorted(sims.values)} instead of {sorted(plan.layout.recorded)}"
    wrong = [n for n in plan.layout.recorded if sims.values[n].shape[1:] != plan.schema.shapes[n]]
    return f"sites {wrong} of another shape" if wrong else ""


def _run_batches(job: _Job, batches: list[_Batch], executor, workers) -> Iterator[tuple[_Batch, Simulations]]:
    """``(batch, rows)`` as each finishes; batches lost with a worker process that died are run
    again, each in a process of its own, so a crashing simulator costs only its row."""
    lost: list[_Batch] = []
    with resolve_executor(executor, workers) as pool:
        yield from map_unordered(job, batches, pool, lost)
    if lost:
        warnings.warn(
            f"a worker process died while simulating batches {sorted(b.index for b in lost)}; they are simulated "
            "again in processes of their own (isolate=True), row by row where a batch's process dies again",
            stacklevel=3,
        )
        with recovery_executor(executor, workers) as pool:
            yield from map_unordered(replace(job, isolate=True), lost, pool)


@dataclass(frozen=True)
class _Batch:
    """One batch of a campaign: rows ``start:start + size`` under seed ``seed``."""

    index: int
    start: int
    size: int
    seed: int
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)

    def with_parameters(self, parameters: dict[str, torch.Tensor]) -> _Batch:
        rows = slice(self.start, self.start + self.size)
        return replace(self, fixed={n: v[rows] for n, v in parameters.items()})


#: Pyro's effect handlers and the RNGs are global to a process: batches on threads take turns.
_MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Job:
    """What a worker does with a batch: run the model on it, in a child process if ``isolate``
    (killed after ``timeout`` seconds a row, if given)."""

    plan: BatchPlan
    args: tuple
    kwargs: dict
    timeout: float | None
    isolate: bool

    def __call__(self, batch: _Batch) -> Simulations:
        with _MODEL_LOCK:
            if not self.isolate:
                return self.plan.run(batch.size, batch.seed, batch.fixed, self.args, self.kwargs)
            return self.plan.run_isolated(batch.size, batch.seed, batch.fixed, self.args, self.kwargs, self.timeout)
