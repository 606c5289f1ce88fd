r"""The conditional pair plot: every pairwise conditional density in one figure (Gonçalves et al. 2020).

Above the diagonal, :math:`p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o)` on its grid;
on the diagonal, the one-dimensional :math:`p(\theta_i \mid \theta_{\setminus i}, x_o)`; a
marker shows the condition. Built on :class:`matplotlib.figure.Figure` without pyplot, so that
drawing never opens a window or blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .density import GuideLike, PosteriorDensity
from .grid import axes, grid_weights, resolve_limits, select

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["conditional_pairplot"]


def conditional_pairplot(
    guide: GuideLike,
    *args: Any,
    condition: Mapping[str, Any] | Any,
    parameters: Sequence[int | str] | None = None,
    resolution: int = 50,
    limits: Any = None,
    figsize: tuple[float, float] | None = None,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Figure:
    r"""A matplotlib figure of the conditional densities of ``guide``'s posterior at the
    observation of ``args``/``kwargs`` (``x=x_o``), all parameters but the plotted ones fixed at
    ``condition`` (as in :func:`~pyro_lfi.analysis.conditional_density`).

    :param parameters: the parameters to plot (flat indices or names); by default all.
    :param limits: the grids' extents, as in :func:`~pyro_lfi.analysis.conditional_density`.
    :returns: the :class:`~matplotlib.figure.Figure` (not shown: save it, or display it in a notebook).
    """
    from matplotlib.figure import Figure

    density = PosteriorDensity.of(guide, args, kwargs)
    chosen = select(density, parameters)
    point = density.one(condition)
    grid = axes(resolve_limits(density, chosen, limits), resolution)
    k = len(chosen)
    figure = Figure(figsize=figsize or (2.2 * k + 0.5, 2.2 * k + 0.5), layout="constrained")
    ax = figure.subplots(k, k, squeeze=False)
    for a in range(k):
        weights = grid_weights(density, point, (chosen[a],), (grid[a],))[0]
        step = float(grid[a][1] - grid[a][0])
        ax[a, a].plot(grid[a].numpy(), (weights / step).numpy(), color="C0")
        ax[a, a].axvline(float(point[0, chosen[a]]), color="C3", lw=0.8)
        ax[a, a].set_yticks([])
        ax[a, a].set_ylim(bottom=0.0)
        ax[a, a].set_xlim(float(grid[a][0]), float(grid[a][-1]))
    for a, b in itertools.product(range(k), range(k)):
        if a > b:
            ax[a, b].set_axis_off()
        elif a < b:
            weights = grid_weights(density, point, (chosen[b], chosen[a]), (grid[b], grid[a]))[0]
            ax[a, b].pcolormesh(grid[b].numpy(), grid[a].numpy(), weights.T.numpy(), cmap=cmap, shading="nearest")
            ax[a, b].plot(float(point[0, chosen[b]]), float(point[0, chosen[a]]), "+", color="C3")
    for a, i in enumerate(chosen):  # row a and column a of the upper triangle are this parameter
        ax[a, a].set_xlabel(density.names[i])
    return figure
