r"""Conditional densities of pairs of parameters and their correlations (Gonçalves et al. 2020).

For a pair :math:`(\theta_i, \theta_j)` and the others fixed at :math:`\theta_{\setminus ij}`,

.. math:: p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o) \propto q(\theta \mid x_o)

on a regular grid, normalized there. The conditional correlation of the pair is the Pearson
correlation of that density on its grid, averaged over conditions
:math:`\theta_{\setminus ij}` drawn from the posterior: a pair that compensates for each other
with the rest held fixed has a large one even when the marginal correlation is small. For a
Gaussian posterior with precision :math:`\Lambda` it is the partial correlation
:math:`-\Lambda_{ij} / \sqrt{\Lambda_{ii} \Lambda_{jj}}`, the same at every condition.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import xarray as xr

from .density import GuideLike, ParameterError, PosteriorDensity
from .grid import axes, grid_correlation, grid_weights, resolve_limits, select

__all__ = ["conditional_correlation", "conditional_density"]


def conditional_density(
    guide: GuideLike,
    *args: Any,
    condition: Mapping[str, Any] | Any,
    dims: Sequence[int | str] = (0, 1),
    resolution: int = 50,
    limits: Any = None,
    **kwargs: Any,
) -> xr.DataArray:
    r"""The conditional density :math:`p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o)` of a
    pair of flat parameters on a ``resolution`` x ``resolution`` grid.

    The posterior is ``guide``'s at the observation the model receives with ``args``/``kwargs``
    (``x=x_o``, as for :meth:`~pyro_lfi.NeuralPosterior.sample`). Densities are evaluated
    through the unconstrained space, Jacobian included, so the result is the density of the
    constrained parameters, normalized on the grid: ``density.sum() * d_i * d_j == 1`` for the
    grid steps :math:`d`.

    :param condition: the values of all parameters (those of ``dims`` are ignored): site values
        as :meth:`~pyro_lfi.NeuralPosterior.sample` returns them (one draw) or a flat tensor.
    :param dims: the pair, as flat indices or names (``"theta[1]"``).
    :param limits: the grid's extent in the constrained space: one ``(low, high)`` pair, a pair per
        parameter of ``dims``, a dict from names to pairs, or None: the 0.1 %-99.9 % range of
        posterior draws, widened by 10 % where the support allows (:func:`.grid.default_limits`).
        The coordinates are the centres of ``resolution`` equal cells between the limits, so a
        uniform prior's bounds are valid limits. Points outside the support have density 0.
    :returns: a DataArray with dims named after the two parameters and their grid as coordinates.
    :raises ParameterError: (an ``IndexError`` and ``ValueError``) for an unknown parameter.
    """
    density = PosteriorDensity.of(guide, args, kwargs)
    dims = tuple(dims)
    if len(dims) != 2:
        raise ParameterError(f"dims must name two parameters, got {dims!r}")
    chosen = select(density, dims)
    grid = axes(resolve_limits(density, chosen, limits), resolution)
    weights = grid_weights(density, density.one(condition), chosen, grid)[0]
    cell = float((grid[0][1] - grid[0][0]) * (grid[1][1] - grid[1][0]))
    names = [density.names[i] for i in chosen]
    return xr.DataArray(
        (weights / cell).numpy(),
        dims=names,
        coords={name: g.numpy() for name, g in zip(names, grid)},
        name="conditional_density",
        attrs={"normalization": "sum * cell area = 1 on the grid", "space": "constrained"},
    )


def conditional_correlation(
    guide: GuideLike,
    *args: Any,
    condition: Mapping[str, Any] | Any | None = None,
    num_conditions: int = 20,
    resolution: int = 50,
    limits: Any = None,
    parameters: Sequence[int | str] | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    r"""The conditional correlation matrix: for every pair, the Pearson correlation of
    :math:`p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o)` on its grid (as
    :func:`conditional_density`), averaged over conditions.

    :param condition: the conditions :math:`\theta_{\setminus ij}`: site values or flat tensors,
        one or a batch; by default ``num_conditions`` draws of the guide at the observation.
    :param parameters: the parameters (flat indices or names); by default all.
    :param limits: as in :func:`conditional_density`, the same grid for every condition.
    :returns: a symmetric DataArray over dims ``("parameter", "parameter_2")`` with the
        parameters' names as coordinates and ones on the diagonal.
    """
    density = PosteriorDensity.of(guide, args, kwargs)
    chosen = select(density, parameters)
    if condition is None:
        conditions = density.to_flat(density.sample_z(num_conditions))
    else:
        conditions = density.parameters(condition).reshape(-1, len(density.names))
    grid = axes(resolve_limits(density, chosen, limits), resolution)
    k = len(chosen)
    mean = torch.eye(k)
    for a, b in itertools.combinations(range(k), 2):
        weights = grid_weights(density, conditions, (chosen[a], chosen[b]), (grid[a], grid[b]))
        rho = grid_correlation(weights, grid[a], grid[b])
        rho = rho[torch.isfinite(rho)]
        if len(rho) < len(conditions):
            warnings.warn(
                f"the conditional density of ({density.names[chosen[a]]}, {density.names[chosen[b]]}) lies "
                f"on one grid line at {len(conditions) - len(rho)} condition(s): raise the resolution or "
                "narrow the limits",
                RuntimeWarning,
                stacklevel=2,
            )
        mean[a, b] = mean[b, a] = rho.mean() if len(rho) else torch.nan
    names = [density.names[i] for i in chosen]
    return xr.DataArray(
        mean.numpy(),
        dims=("parameter", "parameter_2"),
        coords={"parameter": names, "parameter_2": names},
        name="conditional_correlation",
        attrs={"num_conditions": len(conditions), "resolution": resolution},
    )
