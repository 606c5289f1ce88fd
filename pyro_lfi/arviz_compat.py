"""Which ArviZ is installed, asked in one place: 0.x (``arviz.InferenceData``) or 1.x (``xarray.DataTree``).

pyro_lfi builds its results as an :class:`xarray.DataTree` with xarray alone (:func:`dataset`,
:func:`from_datasets`) and returns that tree under ArviZ 1.x, or the
:class:`arviz.InferenceData` made from it under ArviZ 0.x. Everything that reads a result
goes through :func:`group_names` and :func:`group`, which work on both; the few plots whose
functions differ between the two are here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeAlias

import arviz as az
import numpy as np
import xarray as xr

__all__ = [
    "ARVIZ_1",
    "SAMPLE_DIMS",
    "Result",
    "dataset",
    "figure_of",
    "from_datasets",
    "group",
    "group_names",
    "is_result",
    "legend_handle",
    "pareto_k",
    "plot_forest",
    "plot_pair",
    "plot_pit_ecdf",
    "result_type_name",
    "set_attrs",
]

#: Whether ArviZ 1.x (arviz-base, arviz-stats, arviz-plots) is installed rather than 0.x.
ARVIZ_1: bool = int(az.__version__.split(".")[0]) >= 1
#: The dims of the draws of a sampled group, in this order.
SAMPLE_DIMS = ("chain", "draw")
#: What an export returns: an ``xarray.DataTree`` under ArviZ 1.x, an ``arviz.InferenceData`` under 0.x.
Result: TypeAlias = Any


def result_type_name() -> str:
    """The name of the installed ArviZ's result type, for messages."""
    return "xarray.DataTree" if ARVIZ_1 else "InferenceData"


def is_result(obj: Any) -> bool:
    """Whether ``obj`` is a result of the installed ArviZ (a DataTree on 1.x, an InferenceData on 0.x)."""
    return isinstance(obj, xr.DataTree) if ARVIZ_1 else isinstance(obj, az.InferenceData)


def group_names(result: Result) -> list[str]:
    """The groups of ``result`` (``posterior``, ``sample_stats``, ...), in order."""
    if isinstance(result, xr.DataTree):
        return list(result.children)
    return list(result.groups())


def group(result: Result, name: str) -> xr.Dataset:
    """The group ``name`` of ``result`` as an :class:`xarray.Dataset` (a ``KeyError`` if it has none)."""
    if name not in group_names(result):
        raise KeyError(f"the result has no {name!r} group (it has {group_names(result)})")
    if isinstance(result, xr.DataTree):
        return result[name].to_dataset()
    return result[name]


def set_attrs(result: Result, name: str, attrs: Mapping[str, Any]) -> None:
    """Add ``attrs`` to the attributes of the group ``name`` of ``result``, in place."""
    result[name].attrs.update(attrs)  # the group itself: an InferenceData's Dataset, a DataTree's node


def dataset(
    arrays: Mapping[str, Any],
    *,
    sample_dims: Sequence[str] = SAMPLE_DIMS,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """One group: each array ``[*sample_dims, *shape]`` a variable, as ArviZ's ``from_dict`` lays it out.

    The dims after ``sample_dims`` are ``dims[name]``, then ``{name}_dim_{i}``; every dim without
    a coordinate in ``coords`` gets ``0, 1, ...``. ``sample_dims=()`` for ``observed_data``.
    """
    coords, dims = dict(coords or {}), dict(dims or {})
    variables = {}
    for name, values in arrays.items():
        values = np.asarray(values)
        named = list(sample_dims) + list(dims.get(name, ()))
        if values.ndim < len(named):
            raise ValueError(f"{name!r} has shape {values.shape}, fewer dims than {named}")
        named += [f"{name}_dim_{i}" for i in range(len(named) - len(sample_dims), values.ndim - len(sample_dims))]
        variables[name] = xr.Variable(named, values)
    sizes = {d: n for v in variables.values() for d, n in v.sizes.items()}
    used = {d: coords[d] if d in coords else np.arange(n) for d, n in sizes.items()}
    return xr.Dataset(variables, coords=used, attrs=default_attrs() | dict(attrs or {}))


def default_attrs() -> dict[str, str]:
    """The attributes ArviZ writes on each group: when, which ArviZ, which library."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "arviz_version": az.__version__,
        "inference_library": "pyro_lfi",
    }


def from_datasets(groups: Mapping[str, xr.Dataset]) -> Result:
    """A result of the installed ArviZ with these groups: the :class:`xarray.DataTree` itself
    under ArviZ 1.x, its :class:`arviz.InferenceData` under 0.x."""
    tree = xr.DataTree.from_dict(dict(groups))
    return tree if ARVIZ_1 else az.from_datatree(tree)


def figure_of(plot: Any) -> Any:
    """The matplotlib figure of what a plot returned: axes (ArviZ 0.x) or a plot collection (1.x)."""
    if hasattr(plot, "viz"):  # arviz_plots.PlotCollection / PlotMatrix
        return plot.viz["figure"].item()
    return np.atleast_1d(plot).flat[0].figure


def plot_pit_ecdf(pit: Mapping[str, np.ndarray], ci_prob: float) -> Any:
    """ArviZ 1.x's ECDF-difference plot (``plot_ecdf_pit``, its default ``pot_c`` uniformity test,
    points outside probability ``ci_prob`` highlighted) of PIT values ``name -> [N, *shape]``,
    one panel per element; returns the figure. (Under 0.x, :class:`~pyro_lfi.diagnostics.SBCResult`
    draws each panel with ``plot_ecdf``.)"""
    from arviz_base.labels import BaseLabeller

    class FlatLabeller(BaseLabeller):
        """Panel titles ``u[0]`` (as ArviZ 0.x and the other calibration plots write them), not ``u\\n0``."""

        def make_label_vert(self, var_name, sel, isel):
            return self.make_label_flat(var_name, sel, isel)

    tree = xr.DataTree.from_dict({"prior_sbc": dataset({n: v[None] for n, v in pit.items()})})
    plot = az.plot_ecdf_pit(tree, envelope_prob=ci_prob, labeller=FlatLabeller(), backend="matplotlib")
    fig = figure_of(plot)
    for ax in fig.axes:  # the grid's unused panels
        ax.set_visible(ax.has_data())
    return fig


def plot_forest(draws: Mapping[str, Mapping[str, np.ndarray]], var_names: Sequence[str], hdi_prob: float) -> Any:
    """Forest plot of the credible intervals (``hdi_prob``; ArviZ 1.x: equal-tailed, with the
    50% one) of draws ``method -> name -> [n, ...]`` side by side; returns the figure. Under
    ArviZ 1.x every method needs the same ``n``: its plot aligns them draw by draw."""
    results = {m: from_datasets({"posterior": dataset({v: d[v][None] for v in var_names})}) for m, d in draws.items()}
    if ARVIZ_1:
        plot = az.plot_forest(
            results, var_names=list(var_names), combined=True, ci_probs=[0.5, hdi_prob], backend="matplotlib"
        )
        figure_of(plot).legend(handles=[legend_handle(f"C{i}", m) for i, m in enumerate(results)], loc="upper right")
    else:
        plot = az.plot_forest(
            list(results.values()), model_names=list(results), var_names=list(var_names), combined=True,
            hdi_prob=hdi_prob,
        )
    return figure_of(plot)


def legend_handle(color: str, label: str) -> Any:
    """A legend entry: a marker of ``color`` named ``label``."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker="o", linestyle="", label=label)


def plot_pair(draws: Mapping[str, Mapping[str, np.ndarray]], var_names: Sequence[str]) -> Any:
    """Overlaid pair plot (scatter, marginal densities) of draws ``method -> name -> [n, ...]``,
    one colour per method (``C0``, ``C1``, ... in the order given); returns the figure."""
    plot = None
    for i, arrays in enumerate(draws.values()):
        data = from_datasets({"posterior": dataset({v: arrays[v][None] for v in var_names})})
        if ARVIZ_1:
            plot = az.plot_pair(
                data, var_names=list(var_names), plot_matrix=plot, backend="matplotlib",
                visuals={"scatter": {"color": f"C{i}", "alpha": 0.25}, "dist": {"color": f"C{i}"}},
            )
        else:
            plot = az.plot_pair(
                data, var_names=list(var_names), kind="scatter", marginals=True, ax=plot, textsize=9,
                scatter_kwargs={"color": f"C{i}", "alpha": 0.25}, marginal_kwargs={"color": f"C{i}"},
            )
    return figure_of(plot)


def pareto_k(log_weights: np.ndarray) -> float:
    r"""The Pareto :math:`\hat k` of importance weights given as logs ``[n]`` (PSIS, Vehtari et
    al. 2024): ArviZ 0.x's ``psislw``, or arviz-stats' (which takes log likelihoods, whose
    negatives are the weights of leave-one-out)."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    log_weights = np.where(np.isnan(log_weights), -np.inf, log_weights)
    if ARVIZ_1:
        from arviz_stats.base import array_stats

        return float(array_stats.psislw(-log_weights)[1])
    return float(az.psislw(log_weights)[1])
