r"""Cached NUTS references of ``bernoulli_glm`` (and ``_raw``), ``sir`` and ``lotka_volterra``.

The draws come from :func:`pyro_lfi.benchmark.nuts_reference.sample_reference` (validated against
importance sampling by :func:`pyro_lfi.benchmark.importance_check.validate`). A cache file
``data/<posterior>_<index>.npz`` (:mod:`pyro_lfi.benchmark.reference_cache`) is keyed by the
posterior's name, the observation's index, its seed and its true parameter, never by its floats;
it stores the statistic the posterior depends on (the observation; :math:`X^\top y` for the GLMs,
which both GLM tasks share) only to check a regenerated one against it within rounding.
``python -m pyro_lfi.benchmark.references --task NAME --observations 1 2 ...`` writes them.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_lfi.benchmark import reference_cache
from pyro_lfi.benchmark.importance_check import validate
from pyro_lfi.benchmark.nuts_reference import sample_reference
from pyro_lfi.benchmark.reference_cache import ReferenceCacheWarning, seeded_subset
from pyro_lfi.benchmark.tasks import Task, get_task
from pyro_lfi.benchmark.tractable import POSTERIORS, TractablePosterior

__all__ = ["DATA_DIR", "cache_key", "cache_path", "cached_references", "generate", "reference_samples"]

DATA_DIR = Path(__file__).parent / "data"


def cache_key(posterior: str, task: Task, index: int) -> reference_cache.CacheKey:
    """What identifies the cached reference of ``posterior`` at ``task.observation(index)``."""
    seed, true_parameter = task.observation_seed(index), tuple(task.true_parameters[index - 1])
    return reference_cache.CacheKey(posterior, index, seed, true_parameter)


def cache_path(posterior: str, index: int) -> Path:
    """The cache file of ``posterior`` at observation ``index``."""
    return DATA_DIR / f"{posterior}_{index}.npz"


@functools.cache
def cached_references(posterior: str) -> tuple[reference_cache.CachedReference, ...]:
    """Every cache file of ``posterior`` in :data:`DATA_DIR`, read once."""
    paths = sorted(DATA_DIR.glob(f"{posterior}_*.npz"))
    return tuple(reference_cache.read(p) for p in paths if re.fullmatch(rf"{re.escape(posterior)}_\d+", p.stem))


def _cached(
    posterior: TractablePosterior, task: Task, statistic: Tensor, num_samples: int, index: int | None
) -> tuple[np.ndarray | None, str]:
    """The cached samples for this observation, or ``None`` and why not."""
    entries = cached_references(posterior.name)
    if index is not None:
        key = cache_key(posterior.name, task, index)
        entry = next((e for e in entries if e.key == key), None)
        if entry is None:
            return None, f"no cached reference with key {key}"
        reference_cache.check_observation(entry, statistic.numpy())
    else:
        if not entries:
            return None, f"no cache files of {posterior.name} in {DATA_DIR}"
        entry = min(entries, key=lambda e: reference_cache.mismatch(statistic.numpy(), e.x_o))
        error = reference_cache.mismatch(statistic.numpy(), entry.x_o)
        if error > reference_cache.RTOL:
            return None, (f"x_o is no cached observation (nearest: {entry.path.name}, off by {error:.3g} of its "
                          f"scale, tolerance {reference_cache.RTOL:g})")
    if num_samples > entry.samples.shape[0]:
        return None, f"{num_samples} samples asked, {entry.samples.shape[0]} cached"
    return entry.samples, ""


def reference_samples(
    posterior: TractablePosterior, task: Task, statistic: Tensor, num_samples: int, seed: int, index: int | None
) -> Tensor:
    """Reference draws of ``theta`` given ``statistic`` (of ``task.observation(index)`` if
    ``index`` is given): a ``seed``-dependent subset of the cache, or (with a
    :class:`ReferenceCacheWarning`) a fresh NUTS run on the global RNG (minutes)."""
    samples, why = _cached(posterior, task, statistic, num_samples, index)
    if samples is not None:
        return seeded_subset(samples, num_samples, seed)
    warnings.warn(f"{why}: running NUTS for the {task.name} reference (minutes)", ReferenceCacheWarning, stacklevel=3)
    return sample_reference(posterior, statistic, num_samples).samples.to(torch.get_default_dtype())


def generate(
    posterior: str, index: int, num_samples: int = 10_000, seed: int = 0, *, check: bool = True, num_draws: int = 2**18
) -> dict[str, Tensor | float]:
    """Sample, validate (unless not ``check``) and cache the reference of ``posterior`` at observation
    ``index`` of the task of the same name; NUTS runs under ``torch.manual_seed(seed + index)``.
    Returns the run's time, divergences, basin masses and validation."""
    target, task = POSTERIORS[posterior], get_task(posterior)
    statistic = task.observation(index).double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + index)
        start = time.perf_counter()
        run = sample_reference(target, statistic, num_samples)
        seconds = time.perf_counter() - start
        checked = validate(target, statistic, run.parts, run.modes, num_draws) if check else {}
    report = {"seconds": seconds, "divergences": float(run.divergences), **checked}
    masses = np.asarray([mass for _, mass in run.parts])
    extra = {name: np.asarray(value) for name, value in report.items()}
    DATA_DIR.mkdir(exist_ok=True)
    reference_cache.write(cache_path(posterior, index), cache_key(posterior, task, index), statistic.numpy(),
                          run.samples.numpy(), nuts_seed=np.asarray(seed + index), basin_mass=masses, **extra)
    cached_references.cache_clear()
    return {**report, "basin_mass": torch.from_numpy(masses)}
