"""Files of cached reference posterior samples, keyed by what identifies the observation.

A file ``<task>_<index>.npz`` holds ``samples`` and its :class:`CacheKey`: the task, the index
of the fixed observation, the seed and true parameter :meth:`Task.observation` simulates it
from, and :data:`FORMAT_VERSION`. It also holds the observation ``x_o`` it was computed for,
but never as a key: a simulator's float32 output differs in its last bits between CPUs
(vectorized math kernels, fused multiply-adds), so a regenerated observation is only compared
with it, within :data:`RTOL`, to catch a changed generator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FORMAT_VERSION",
    "RTOL",
    "CacheFormatError",
    "CacheKey",
    "CachedReference",
    "ObservationMismatchError",
    "ReferenceCacheWarning",
    "check_observation",
    "migrate",
    "mismatch",
    "read",
    "seeded_subset",
    "write",
]

#: Version of the file layout (0: no key; files were matched by bit-exact ``x_o``).
FORMAT_VERSION = 1
#: Regenerated and cached observations match if ``max |a - b| <= RTOL * max(1, max |b|)``.
#: Rounding in a float32 simulator moves its output by a few ulps (1.2e-7 each) of its
#: largest intermediate values, the observation's scale (SLCP observation 2: 1.0e-7 between
#: the machine that wrote the cache and another); 1e-5 is ~80 ulps of it, while a changed
#: generator moves observations by O(1).
RTOL = 1e-5
_KEY_FIELDS = ("task", "index", "observation_seed", "true_parameter", "format_version")


class ReferenceCacheWarning(UserWarning):
    """A reference posterior is not in the cache and is computed (slowly)."""


class CacheFormatError(ValueError):
    """A cache file in an unknown or outdated layout."""


class ObservationMismatchError(ValueError):
    """The regenerated observation differs from the cached one beyond rounding."""


@dataclass(frozen=True)
class CacheKey:
    """What identifies a cached reference: none of it is a regenerated float."""

    task: str
    index: int
    observation_seed: int
    true_parameter: tuple[float, ...]
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class CachedReference:
    """One cache file: its key, the observation it was computed for and the samples."""

    key: CacheKey
    x_o: np.ndarray
    samples: np.ndarray
    path: Path


def mismatch(x_o: np.ndarray, cached_x_o: np.ndarray) -> float:
    """``max |x_o - cached| / max(1, max |cached|)``: below :data:`RTOL` is rounding."""
    x_o, cached_x_o = np.asarray(x_o, dtype=np.float64), np.asarray(cached_x_o, dtype=np.float64)
    if x_o.shape != cached_x_o.shape:
        return float("inf")
    return float(np.abs(x_o - cached_x_o).max() / max(1.0, np.abs(cached_x_o).max()))


def seeded_subset(samples: np.ndarray, num_samples: int, seed: int) -> Tensor:
    """A ``seed``-dependent random subset of ``num_samples`` cached samples, in the default dtype."""
    rows = torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    return torch.from_numpy(samples)[rows].to(torch.get_default_dtype())


def check_observation(entry: CachedReference, x_o: np.ndarray) -> None:
    """Raise :class:`ObservationMismatchError` if ``x_o`` differs from ``entry.x_o`` beyond rounding."""
    error = mismatch(x_o, entry.x_o)
    if not error <= RTOL:
        raise ObservationMismatchError(
            f"{entry.path.name}: the regenerated observation {entry.key.task} #{entry.key.index} differs from the "
            f"cached one by {error:.3g} of its scale (rounding is below {RTOL:g}), so the simulator or the way "
            f"observations are made changed; regenerate the cache (python -m pyro_lfi.benchmark.references "
            f"--task {entry.key.task} --observations {entry.key.index})\n"
            f"  regenerated: {np.asarray(x_o).tolist()}\n  cached:      {entry.x_o.tolist()}"
        )


def write(path: Path, key: CacheKey, x_o: np.ndarray, samples: np.ndarray, **extra: np.ndarray) -> None:
    """Write a cache file in the current layout (``extra``: e.g. the validation report), via a
    temporary file renamed into place."""
    path = Path(path)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(
        partial,
        **extra,
        x_o=np.asarray(x_o, dtype=np.float32),
        samples=np.asarray(samples, dtype=np.float32),
        task=np.asarray(key.task),
        index=np.asarray(key.index),
        observation_seed=np.asarray(key.observation_seed, dtype=np.int64),
        true_parameter=np.asarray(key.true_parameter, dtype=np.float64),
        format_version=np.asarray(key.format_version),
    )
    partial.replace(path)


def read(path: Path) -> CachedReference:
    """Read a cache file; :class:`CacheFormatError` unless it has the current layout."""
    with np.load(path) as data:
        version = int(data["format_version"]) if "format_version" in data.files else 0
        if version != FORMAT_VERSION or not set(_KEY_FIELDS) <= set(data.files):
            raise CacheFormatError(
                f"{path}: cache format version {version}, expected {FORMAT_VERSION}; "
                f"python -m pyro_lfi.benchmark.references --migrate rewrites version 0 files"
            )
        key = CacheKey(
            task=str(data["task"]),
            index=int(data["index"]),
            observation_seed=int(data["observation_seed"]),
            true_parameter=tuple(float(v) for v in data["true_parameter"]),
            format_version=version,
        )
        return CachedReference(key, data["x_o"], data["samples"], Path(path))


def migrate(path: Path, key: CacheKey, x_o: np.ndarray) -> bool:
    """Rewrite a version-0 file (``x_o``, ``samples``, ``seed``, report) as version 1 with ``key``.

    ``x_o`` is the observation regenerated for ``key``; the file's own must match it within
    :data:`RTOL`. Samples and stored observation are kept bit for bit; ``seed``, the seed of
    the NUTS run, becomes ``nuts_seed``. Returns whether the file was rewritten (``False`` if
    it already has the current layout).
    """
    with np.load(path) as data:
        if "format_version" in data.files:
            read(path)  # current, or an error
            return False
        old = {name: data[name] for name in data.files}
    if not re.fullmatch(rf"{re.escape(key.task)}_{key.index}\.npz", Path(path).name):
        raise CacheFormatError(f"{path}: file name does not fit task {key.task!r} index {key.index}")
    check_observation(CachedReference(key, old["x_o"], old["samples"], Path(path)), x_o)
    extra = {name: value for name, value in old.items() if name not in ("x_o", "samples", "seed")}
    if "seed" in old:
        extra["nuts_seed"] = old["seed"]
    write(path, key, old["x_o"], old["samples"], **extra)
    new = read(path)
    if not (np.array_equal(new.samples, old["samples"]) and np.array_equal(new.x_o, old["x_o"])):
        raise RuntimeError(f"{path}: migration changed the stored samples")  # copies: must be exact
    return True
