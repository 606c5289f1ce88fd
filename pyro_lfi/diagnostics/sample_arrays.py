"""Draws as numpy arrays: tensors, arrays, dicts of them and ArviZ posteriors, pooled and flattened.

The one converter of the diagnostics that compare sets of draws (:func:`~pyro_lfi.diagnostics.c2st`,
:func:`~pyro_lfi.compare`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..arviz_compat import group, group_names

__all__ = [
    "Layout",
    "Samples",
    "flatten_columns",
    "posterior_draws",
    "posterior_matrix",
    "posterior_variables",
    "samples_matrix",
    "to_numpy",
]

ArrayLike = torch.Tensor | np.ndarray
#: Draws ``[n, d]``, a dict ``name -> [n, ...]`` of them, or an ArviZ result (``InferenceData``, ``DataTree``).
Samples = ArrayLike | Mapping[str, ArrayLike] | Any
#: The ``(key, event_shape)`` of each entry of a dict of draws, in column order.
Layout = list[tuple[str, tuple[int, ...]]]


def to_numpy(x: Any, what: str) -> np.ndarray:
    """``x`` (a tensor or an array) as a numpy array; a ``TypeError`` naming ``what`` otherwise."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{what} must be a torch tensor, numpy array or dict of them, got {type(x).__name__}")


def flatten_columns(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """``[n, d]``: the entries ``keys`` of ``arrays`` (each ``[n, ...]``), flattened side by side in
    that order, in their own dtype."""
    return np.concatenate([arrays[k].reshape(arrays[k].shape[0], -1) for k in keys], axis=1)


def samples_matrix(x: Samples, what: str) -> tuple[np.ndarray, Layout | None]:
    """``x`` (``[n, d]`` or a dict ``name -> [n, ...]``) as a float64 array ``[n, d]`` and, for a
    dict, its :data:`Layout` in sorted-key order; a ``ValueError`` naming ``what`` if it has none."""
    if isinstance(x, Mapping):
        if not x:
            raise ValueError(f"{what} is an empty dict")
        keys = sorted(x)
        parts = {k: to_numpy(x[k], f"{what}[{k!r}]") for k in keys}
        n = {p.shape[0] if p.ndim else -1 for p in parts.values()}
        if len(n) != 1 or -1 in n:
            raise ValueError(
                f"all entries of {what} need the same number of samples along dim 0, got "
                + ", ".join(f"{k}: {tuple(p.shape)}" for k, p in parts.items())
            )
        layout = [(k, tuple(p.shape[1:])) for k, p in parts.items()]
        return flatten_columns(parts, keys).astype(np.float64, copy=False), layout
    arr = to_numpy(x, what)
    if arr.ndim != 2:
        raise ValueError(f"{what} must have shape [n, d], got {tuple(arr.shape)}")
    return arr.astype(np.float64, copy=False), None


def posterior_variables(idata: Any, what: str, var_names: Sequence[str] | None = None) -> list[str]:
    """``var_names`` (default: every variable) of the ``posterior`` group of ``idata``, checked:
    a ``ValueError`` naming ``what`` if the group or a variable is missing."""
    if "posterior" not in group_names(idata):
        raise ValueError(f"{what} is an ArviZ result without a posterior group")
    variables = list(group(idata, "posterior").data_vars)
    names = variables if var_names is None else list(var_names)
    unknown = [n for n in names if n not in variables]
    if unknown:
        raise ValueError(f"variables {unknown} are not in the posterior of {what}, which has {variables}")
    return names


def posterior_draws(idata: Any, var_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The posterior variables ``var_names`` of ``idata`` as ``name -> [chain * draw, ...]``
    (chains pooled)."""
    out, posterior = {}, group(idata, "posterior")
    for name in var_names:
        values = posterior[name].transpose("chain", "draw", ...).values
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out


def posterior_matrix(idata: Any, var_names: Sequence[str]) -> np.ndarray:
    """Posterior draws as ``[chain * draw, d]``, the variables ``var_names`` flattened in that
    order, in their own dtype."""
    return flatten_columns(posterior_draws(idata, var_names), var_names)
