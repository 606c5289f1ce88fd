r"""Cached NUTS reference posteriors, and ``python -m pyro_lfi.benchmark.references``, which makes them.

``python -m pyro_lfi.benchmark.references --task NAME --observations 1 2 ...`` samples, validates
(printing the validation) and writes the cached references of a task's fixed observations:
``slcp`` (and ``slcp_distractors``, whose references are SLCP's) here, ``bernoulli_glm`` (and
``bernoulli_glm_raw``), ``sir`` and ``lotka_volterra`` by :mod:`pyro_lfi.benchmark.reference_store`.

SLCP: the draws come from :mod:`pyro_lfi.benchmark.slcp_posterior` (NUTS on the folded posterior,
unfolded by the exact sign symmetry, validated against prior importance sampling). Because
10,000 NUTS draws (4 chains x 1000 warmup + 5000 steps, thinned by 2) take about
10 minutes per observation on one core (Pyro's NUTS costs ~2 ms per leapfrog step here, its
trees have ~10-20 steps), samples for the fixed observations
are cached in ``pyro_lfi/benchmark/data/slcp_<index>.npz``. The cache is keyed by the
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

from pyro_lfi.benchmark import reference_cache, reference_store
from pyro_lfi.benchmark.reference_cache import ReferenceCacheWarning, seeded_subset
from pyro_lfi.benchmark.slcp_posterior import (
    FOLDED_LOW,
    HIGH,
    importance_moments,
    slcp_log_likelihood,
    slcp_nuts,
    unfold,
    validate,
)
from pyro_lfi.benchmark.tasks import TASKS, get_task

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
    return seeded_subset(entry.samples, num_samples, seed)


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
    return seeded_subset(nearest.samples, num_samples, seed)


def migrate() -> None:
    """Rewrite version-0 cache files in the current layout, keeping their samples."""
    for path in sorted(DATA_DIR.glob("slcp_*.npz")):
        index = int(path.stem.removeprefix("slcp_"))
        done = reference_cache.migrate(path, cache_key(index), get_task("slcp").observation(index).numpy())
        print(f"{path.name}: {'migrated' if done else 'already current'}")
    cached_references.cache_clear()


#: The cached posterior each task's reference comes from (tasks not listed have exact references).
CACHED_POSTERIOR = {
    "slcp": "slcp",
    "slcp_distractors": "slcp",
    "bernoulli_glm": "bernoulli_glm",
    "bernoulli_glm_raw": "bernoulli_glm",
    "sir": "sir",
    "lotka_volterra": "lotka_volterra",
}


def _print_report(title: str, report: dict[str, Tensor | float] | None) -> None:
    print(title, flush=True)
    for name, value in (report or {}).items():
        shown = value.tolist() if isinstance(value, Tensor) else [value]
        print(f"  {name}: " + " ".join(f"{v:.3f}" for v in shown), flush=True)


def _generate_slcp(index: int, num_samples: int, seed: int, check: bool) -> None:
    """NUTS (folded, then unfolded), validation and the cache file of SLCP observation ``index``."""
    x_o = get_task("slcp").observation(index)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + index)
        start = time.perf_counter()
        folded, chains = slcp_nuts(x_o, num_samples)
        seconds = time.perf_counter() - start
        samples = unfold(folded)
        report = validate(x_o, chains) if check else None
    extra = {} if report is None else {k: np.asarray(v) for k, v in report.items()}
    reference_cache.write(
        cache_path(index), cache_key(index), x_o.numpy(), samples.numpy(), nuts_seed=np.asarray(seed + index), **extra
    )
    _print_report(f"slcp observation {index}: {samples.shape[0]} samples in {seconds:.1f} s", report)


def main(argv: list[str] | None = None) -> None:
    """Write (and validate) cached NUTS reference samples for a task's fixed observations."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--task", default="slcp", choices=sorted(TASKS))
    parser.add_argument("--observations", "--indices", dest="observations", type=int, nargs="*", default=None,
                        help="observation indices (default: all of the task's)")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--migrate", action="store_true", help="only rewrite old SLCP cache files in the new layout")
    args = parser.parse_args(argv)
    if args.migrate:
        migrate()
        return
    # Tiny tensors: extra intra-op threads only add overhead (5x slower when cores are busy).
    torch.set_num_threads(1)
    posterior = CACHED_POSTERIOR.get(args.task)
    if posterior is None:
        print(f"{args.task} has an exact reference: nothing to cache")
        return
    task = get_task(posterior)
    DATA_DIR.mkdir(exist_ok=True)
    for index in args.observations or range(1, task.num_observations + 1):
        if posterior == "slcp":
            _generate_slcp(index, args.num_samples, args.seed, not args.no_validate)
            continue
        report = reference_store.generate(posterior, index, args.num_samples, args.seed, check=not args.no_validate)
        _print_report(f"{posterior} observation {index}: {args.num_samples} samples", report)
    cached_references.cache_clear()


if __name__ == "__main__":
    main()
