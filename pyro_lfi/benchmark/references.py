r"""SLCP reference posteriors: cached NUTS draws of the fixed observations.

The draws come from :mod:`pyro_lfi.benchmark.slcp_posterior` (NUTS on the folded posterior,
unfolded by the exact sign symmetry, validated against prior importance sampling). Because
10,000 NUTS draws (4 chains x 1000 warmup + 5000 steps, thinned by 2) take about
10 minutes per observation on one core (Pyro's NUTS costs ~2 ms per leapfrog step here, its
trees have ~10-20 steps), samples for the fixed observations
are cached in ``pyro_lfi/benchmark/data/slcp_<index>.npz``; regenerate them with
``python -m pyro_lfi.benchmark.references`` (prints the validation). The cache is keyed by the
observation's index and what generated it (:mod:`pyro_lfi.benchmark.reference_cache`), not by
its floats: those differ in their last bits between CPUs, so :func:`slcp_reference` matches an
``x_o`` to the cached observations within rounding.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_lfi.benchmark import reference_cache
from pyro_lfi.benchmark.slcp_posterior import (
    FOLDED_LOW,
    HIGH,
    importance_moments,
    slcp_log_likelihood,
    slcp_nuts,
    unfold,
    validate,
)
from pyro_lfi.benchmark.tasks import get_task

__all__ = [
    "FOLDED_LOW",
    "HIGH",
    "ReferenceCacheWarning",
    "cache_key",
    "cached_references",
    "importance_moments",
    "slcp_log_likelihood",
    "slcp_nuts",
    "slcp_reference",
    "slcp_reference_at",
    "unfold",
    "validate",
]

DATA_DIR = Path(__file__).parent / "data"


class ReferenceCacheWarning(UserWarning):
    """A reference posterior is not in the cache and is computed (slowly)."""


def cache_key(index: int) -> reference_cache.CacheKey:
    """What identifies the cached reference of SLCP observation ``index``."""
    task = get_task("slcp")
    return reference_cache.CacheKey(
        task.name, index, task.observation_seed(index), tuple(task.true_parameters[index - 1])
    )


def cache_path(index: int) -> Path:
    """The cache file of SLCP observation ``index``."""
    return DATA_DIR / f"slcp_{index}.npz"


@functools.cache
def cached_references() -> tuple[reference_cache.CachedReference, ...]:
    """Every cache file in :data:`DATA_DIR`, read once."""
    return tuple(reference_cache.read(path) for path in sorted(DATA_DIR.glob("slcp_*.npz")))


def _subset(samples: np.ndarray, num_samples: int, seed: int) -> Tensor:
    """A ``seed``-dependent random subset of ``num_samples`` cached samples."""
    rows = torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    return torch.from_numpy(samples)[rows].to(torch.get_default_dtype())


def _nuts_reference(x_o: Tensor, num_samples: int, why: str | None = None) -> Tensor:
    """NUTS draws of the (unfolded) posterior; ``why``: the cache miss to warn about."""
    if why is not None:
        warnings.warn(f"{why}: running NUTS for the SLCP reference (minutes)", ReferenceCacheWarning, stacklevel=3)
    folded, _ = slcp_nuts(x_o, num_samples)
    return unfold(folded)


def slcp_reference_at(index: int, num_samples: int, seed: int, *, use_cache: bool = True) -> Tensor:
    """Reference samples of the SLCP posterior given ``observation(index)`` (uses the global RNG).

    The cache entry is found by :func:`cache_key`; the regenerated observation must match the
    cached one within rounding (:func:`reference_cache.check_observation`, else
    :class:`reference_cache.ObservationMismatchError`). Then a ``seed``-dependent random subset
    of the cached samples is returned; without an entry, or for more samples than cached, NUTS
    runs (minutes) with a :class:`ReferenceCacheWarning`.
    """
    x_o = get_task("slcp").observation(index)
    if not use_cache:
        return _nuts_reference(x_o, num_samples)
    key = cache_key(index)
    entry = next((e for e in cached_references() if e.key == key), None)
    if entry is None:
        return _nuts_reference(x_o, num_samples, f"no cached reference with key {key}")
    reference_cache.check_observation(entry, x_o.numpy())
    if num_samples > entry.samples.shape[0]:
        return _nuts_reference(x_o, num_samples, f"{num_samples} samples asked, {entry.samples.shape[0]} cached")
    return _subset(entry.samples, num_samples, seed)


def slcp_reference(x_o: Tensor, num_samples: int, seed: int, *, use_cache: bool = True) -> Tensor:
    """Reference samples of the SLCP posterior given any ``x_o`` (uses the global RNG).

    If ``x_o`` matches a cached observation within rounding (:data:`reference_cache.RTOL`) and at
    most the cached number of samples is requested, a ``seed``-dependent random subset of the
    cached samples is returned; otherwise NUTS runs (minutes) with a :class:`ReferenceCacheWarning`.
    """
    if not use_cache:
        return _nuts_reference(x_o, num_samples)
    observed = x_o.detach().cpu().numpy()
    entries = cached_references()
    if not entries:
        return _nuts_reference(x_o, num_samples, f"no cache files in {DATA_DIR}")
    nearest = min(entries, key=lambda e: reference_cache.mismatch(observed, e.x_o))
    error = reference_cache.mismatch(observed, nearest.x_o)
    if error > reference_cache.RTOL:
        why = (f"x_o is no cached observation (nearest: {nearest.path.name}, off by {error:.3g} of its scale, "
               f"tolerance {reference_cache.RTOL:g})")
        return _nuts_reference(x_o, num_samples, why)
    if num_samples > nearest.samples.shape[0]:
        return _nuts_reference(x_o, num_samples, f"{num_samples} samples asked, {nearest.samples.shape[0]} cached")
    return _subset(nearest.samples, num_samples, seed)


def migrate() -> None:
    """Rewrite version-0 cache files in the current layout, keeping their samples."""
    for path in sorted(DATA_DIR.glob("slcp_*.npz")):
        index = int(path.stem.removeprefix("slcp_"))
        done = reference_cache.migrate(path, cache_key(index), get_task("slcp").observation(index).numpy())
        print(f"{path.name}: {'migrated' if done else 'already current'}")
    cached_references.cache_clear()


def main(argv: list[str] | None = None) -> None:
    """Write (and validate) cached SLCP reference samples for the fixed observations."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--indices", type=int, nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--migrate", action="store_true", help="only rewrite old cache files in the current layout")
    args = parser.parse_args(argv)
    if args.migrate:
        migrate()
        return
    # Tiny tensors: extra intra-op threads only add overhead (5x slower when cores are busy).
    torch.set_num_threads(1)
    task = get_task("slcp")
    DATA_DIR.mkdir(exist_ok=True)
    for index in args.indices or range(1, task.num_observations + 1):
        x_o = task.observation(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed + index)
            start = time.perf_counter()
            folded, chains = slcp_nuts(x_o, args.num_samples)
            seconds = time.perf_counter() - start
            samples = unfold(folded)
            report = None if args.no_validate else validate(x_o, chains)
        extra = {} if report is None else {k: np.asarray(v) for k, v in report.items()}
        reference_cache.write(
            cache_path(index), cache_key(index), x_o.numpy(), samples.numpy(),
            nuts_seed=np.asarray(args.seed + index), **extra,
        )
        print(f"slcp observation {index}: {samples.shape[0]} samples in {seconds:.1f} s")
        if report is not None:
            for name, value in report.items():
                shown = value.tolist() if isinstance(value, Tensor) else [value]
                print(f"  {name}: " + " ".join(f"{v:.3f}" for v in shown))
    cached_references.cache_clear()


if __name__ == "__main__":
    main()
