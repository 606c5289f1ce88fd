r"""Regular grids over a few parameters, the others fixed, and the posterior normalized on them.

With every parameter but :math:`\theta_I` fixed at a condition :math:`\theta_{\setminus I}`,

.. math:: p(\theta_I \mid \theta_{\setminus I}, x_o) \propto q(\theta \mid x_o),

which :func:`grid_weights` evaluates through :math:`z = T^{-1}(\theta)` (the Jacobian included, so
that the density is the constrained one) at every grid point and normalizes to weights summing
to one; the density on the grid is the weight over the cell volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .density import ParameterError, PosteriorDensity

__all__ = ["axes", "default_limits", "grid_correlation", "grid_weights", "resolve_limits", "select"]

#: Grid points evaluated in one call of the guide's density.
CHUNK = 2**15


def select(density: PosteriorDensity, parameters: Sequence[int | str] | None) -> list[int]:
    """Flat indices of ``parameters`` (indices or names; all that can be varied alone if None)."""
    if parameters is None:
        return [i for i, free in enumerate(density.free) if free]
    if isinstance(parameters, str | int):
        parameters = [parameters]
    chosen = [density.index(p) for p in parameters]
    if len(set(chosen)) != len(chosen):
        raise ParameterError(f"parameters {list(parameters)} name one parameter twice")
    return chosen


@torch.no_grad()
def default_limits(density: PosteriorDensity, num_samples: int = 4000, widen: float = 0.1) -> torch.Tensor:
    """Per flat parameter ``[P, 2]``: the 0.1 % to 99.9 % range of posterior draws, widened by
    ``widen`` of its width on each side where that stays inside the support."""
    flat = density.to_flat(density.sample_z(num_samples))
    q = torch.tensor([0.001, 0.999], dtype=flat.dtype)
    lo, hi = torch.quantile(flat, q, dim=0)
    width = (hi - lo).clamp_min(1e-6 * (1 + flat.abs().amax(0)))
    hi = lo + width
    base = flat[0].expand(2 * len(lo), -1).clone()  # a draw: in the support
    index = torch.arange(len(lo))
    base[index, index] = lo - widen * width
    base[index + len(lo), index] = hi + widen * width
    inside = density.in_support(base)
    lo = torch.where(inside[: len(lo)], lo - widen * width, lo)
    hi = torch.where(inside[len(lo) :], hi + widen * width, hi)
    return torch.stack([lo, hi], -1)


def resolve_limits(density: PosteriorDensity, chosen: Sequence[int], limits: Any) -> torch.Tensor:
    """Limits ``[k, 2]`` of the ``chosen`` parameters from ``limits``: None (from posterior draws,
    :func:`default_limits`), one ``(low, high)`` pair for all, one pair per chosen parameter, or a
    mapping from parameter names or indices to pairs (the others by default)."""
    if isinstance(limits, Mapping):
        given = {density.index(k, free=False): v for k, v in limits.items()}
        if not set(given) <= set(chosen):
            raise ParameterError(f"limits given for parameters not on the grid: {sorted(set(given) - set(chosen))}")
        out = default_limits(density)[list(chosen)] if len(given) < len(chosen) else torch.zeros(len(chosen), 2)
        for row, i in enumerate(chosen):
            if i in given:
                out[row] = torch.as_tensor(given[i], dtype=out.dtype)
    elif limits is None:
        out = default_limits(density)[list(chosen)]
    else:
        out = torch.as_tensor(limits, dtype=torch.get_default_dtype())
        if out.shape == (2,):
            out = out.expand(len(chosen), 2)
        if out.shape != (len(chosen), 2):
            raise ValueError(
                f"limits must be one (low, high) pair or one per parameter ({len(chosen)}), "
                f"got shape {tuple(out.shape)}"
            )
    if not (torch.isfinite(out).all() and (out[:, 0] < out[:, 1]).all()):
        raise ValueError(f"limits must be finite (low, high) pairs with low < high, got {out.tolist()}")
    return out


def axes(limits: torch.Tensor, resolution: int) -> list[torch.Tensor]:
    """Per row ``(low, high)`` of ``limits``, the centres of ``resolution`` equal cells between
    them: never on the limits, so that limits at a bounded support's ends (a uniform prior's
    bounds) keep every point inside it."""
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    cells = (torch.arange(resolution, dtype=limits.dtype) + 0.5) / resolution
    return [lo + (hi - lo) * cells for lo, hi in limits]


@torch.no_grad()
def grid_weights(
    density: PosteriorDensity, conditions: torch.Tensor, dims: Sequence[int], grid: Sequence[torch.Tensor]
) -> torch.Tensor:
    r"""Weights ``[C, R_1, ..., R_k]`` of :math:`q(\theta \mid x_o)` on the grid over ``dims``,
    the other parameters at each of the ``C`` ``conditions`` ``[C, P]``; each grid sums to one.
    Points outside the support have weight zero."""
    mesh = torch.meshgrid(*grid, indexing="ij")
    points = conditions[:, None, :].repeat(1, mesh[0].numel(), 1)
    for d, m in zip(dims, mesh):
        points[..., d] = m.reshape(-1)
    logp = torch.cat([_log_prob(density, chunk) for chunk in points.reshape(-1, points.shape[-1]).split(CHUNK)])
    logp = logp.reshape(len(conditions), -1)
    if not torch.isfinite(logp).any(-1).all():
        raise ValueError(
            f"no point of the grid over {[density.names[d] for d in dims]} has a finite posterior density: "
            "are the limits outside the support?"
        )
    return torch.softmax(logp, -1).reshape(len(conditions), *mesh[0].shape)


def _log_prob(density: PosteriorDensity, flat: torch.Tensor) -> torch.Tensor:
    logp = density.log_prob(density.to_z(flat))
    valid = torch.isfinite(logp) & density.in_support(flat)
    return torch.where(valid, logp, torch.full_like(logp, -torch.inf))


def grid_correlation(weights: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each grid's weights ``[C, R_a, R_b]`` over axes ``a`` and ``b``
    (NaN where a grid's mass lies on one row or column)."""
    wa, wb = weights.sum(-1), weights.sum(-2)
    da = a - (wa * a).sum(-1, keepdim=True)
    db = b - (wb * b).sum(-1, keepdim=True)
    cov = torch.einsum("cij,ci,cj->c", weights, da, db)
    return cov / ((wa * da**2).sum(-1) * (wb * db**2).sum(-1)).sqrt()
