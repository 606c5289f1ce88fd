"""Side-by-side comparison of posteriors (NPE, NUTS, VI, ...) as ArviZ results (InferenceData or DataTree)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from ..arviz_compat import (
    Result,
    group,
    group_names,
    is_result,
    legend_handle,
    plot_forest,
    plot_pair,
    result_type_name,
)
from .c2st import c2st
from .sample_arrays import posterior_draws, posterior_matrix

__all__ = ["Comparison", "compare"]

#: Posterior attributes read as a method's wall time (seconds), in this order.
TIME_ATTRS = ("sampling_time", "training_time")


@dataclass
class Comparison:
    """The posteriors being compared, and the table :func:`compare` computed.

    :ivar posteriors: method name -> ArviZ result (``InferenceData`` under ArviZ 0.x, ``DataTree`` under 1.x).
    :ivar reference: the reference method's name.
    :ivar var_names: the posterior variables compared.
    :ivar table: one row per method (see :func:`compare`).
    """

    posteriors: dict[str, Result]
    reference: str
    var_names: list[str]
    table: pd.DataFrame

    def plot_pair(self, num_draws: int = 1000, seed: int = 0):
        """Overlaid pair plot (ArviZ scatter plus marginal densities), one colour per method,
        ``num_draws`` random draws of each. Returns the matplotlib figure."""
        fig = plot_pair(self.draws(num_draws, seed), self.var_names)
        fig.legend(handles=[legend_handle(f"C{i}", n) for i, n in enumerate(self.posteriors)], loc="upper right")
        return fig

    def plot_forest(self, hdi_prob: float = 0.94, seed: int = 0):
        """ArviZ forest plot of every method's credible intervals side by side, each from as many
        draws as the method with the fewest has (chains pooled). Returns the matplotlib figure."""
        fig = plot_forest(self.draws(None, seed), self.var_names, hdi_prob)
        fig.tight_layout()
        return fig

    def draws(self, num_draws: int | None = None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """``method -> variable -> [n, ...]``: ``n`` random draws of each method, chains pooled, in
        their order; ``n`` is ``num_draws`` or the most every method has (default: the fewest any has)."""
        rng = np.random.default_rng(seed)
        pooled = {name: posterior_draws(idata, self.var_names) for name, idata in self.posteriors.items()}
        sizes = [len(p[self.var_names[0]]) for p in pooled.values()]
        n = min(sizes) if num_draws is None else num_draws
        rows = [np.sort(rng.choice(size, min(size, n), replace=False)) for size in sizes]
        return {name: {v: a[r] for v, a in p.items()} for (name, p), r in zip(pooled.items(), rows)}


def _wall_time(name: str, idata: Result, wall_time: Mapping[str, float] | None) -> float:
    """``wall_time[name]``, else the first time attribute of the posterior (:data:`TIME_ATTRS`), else NaN."""
    if wall_time is not None and name in wall_time:
        return float(wall_time[name])
    attrs = group(idata, "posterior").attrs
    return next((float(attrs[a]) for a in TIME_ATTRS if a in attrs), float("nan"))


def _min_ess(idata: Result, var_names: Sequence[str]) -> float:
    """The smallest bulk effective sample size over every element of ``var_names``."""
    ess = az.ess(idata, var_names=list(var_names))
    return float(min(ess[v].values.min() for v in var_names))


def compare(
    posteriors: Mapping[str, Result],
    reference: str,
    *,
    var_names: Sequence[str] | None = None,
    wall_time: Mapping[str, float] | None = None,
    classifier: str = "mlp",
    max_samples: int | None = None,
    seed: int = 0,
) -> Comparison:
    r"""Compare posteriors of the same model and observation with a reference one.

    The table has one row per method (the reference first) and the columns

    * ``c2st``: classifier two-sample accuracy against the reference (:func:`~pyro_lfi.diagnostics.c2st`,
      on the same number of draws from each, so 0.5 is chance; NaN for the reference itself);
    * ``mean_error``: :math:`\max_k |\bar\theta_k - \bar\theta^{\mathrm{ref}}_k| / s^{\mathrm{ref}}_k`
      over the flattened elements, in reference posterior standard deviations;
    * ``sd_error``: :math:`\max_k |s_k / s^{\mathrm{ref}}_k - 1|`;
    * ``ess``: the smallest bulk effective sample size over the elements (:func:`arviz.ess`);
    * ``wall_time``: from ``wall_time[name]``, else the posterior's ``sampling_time`` or
      ``training_time`` attribute (as :func:`~pyro_lfi.baselines.mcmc` and
      :func:`~pyro_lfi.baselines.amortized_vi` record them), else NaN.

    :param posteriors: method name -> ArviZ result with a posterior group (:class:`arviz.InferenceData`
        under ArviZ 0.x, :class:`xarray.DataTree` under 1.x).
    :param reference: the name of the reference method (a key of ``posteriors``).
    :param var_names: variables to compare (default: those all posteriors share).
    :param classifier: C2ST classifier, ``"mlp"`` (sbibm's) or ``"fast"``.
    :param max_samples: at most this many draws per method enter the C2ST (default: the
        smallest number any method has).
    :returns: a :class:`Comparison` (``.table``, ``.plot_pair()``, ``.plot_forest()``).
    """
    posteriors = _checked_posteriors(posteriors, reference)
    var_names = _shared_variables(posteriors, reference) if var_names is None else list(var_names)
    ordered = {reference: posteriors[reference], **posteriors}
    draws = {name: posterior_matrix(idata, var_names) for name, idata in ordered.items()}
    num_c2st = max_samples or min(len(d) for d in draws.values())
    c2st_options = {"seed": seed, "classifier": classifier, "max_samples": num_c2st}
    rows = []
    for name, idata in ordered.items():
        options = None if name == reference else c2st_options
        rows.append(_row(name, idata, draws[name], draws[reference], var_names, wall_time, options))
    table = pd.DataFrame(rows).set_index("method")
    return Comparison(ordered, reference, var_names, table)


def _checked_posteriors(posteriors: Mapping[str, Result], reference: str) -> dict[str, Result]:
    """``posteriors`` as a dict, checked: ArviZ results with a posterior group, ``reference`` among them."""
    posteriors = dict(posteriors)
    if reference not in posteriors:
        raise KeyError(f"reference {reference!r} is not one of the posteriors {list(posteriors)}")
    for name, idata in posteriors.items():
        if not is_result(idata) or "posterior" not in group_names(idata):
            raise TypeError(f"posteriors[{name!r}] must be an {result_type_name()} with a posterior group")
    return posteriors


def _shared_variables(posteriors: dict[str, Result], reference: str) -> list[str]:
    """The variables every posterior has, in the reference's order."""
    shared = set.intersection(*(set(group(i, "posterior").data_vars) for i in posteriors.values()))
    var_names = [v for v in group(posteriors[reference], "posterior").data_vars if v in shared]
    if not var_names:
        raise ValueError("the posteriors share no variables; pass var_names=")
    return var_names


def _row(
    name: str,
    idata: Result,
    x: np.ndarray,
    ref: np.ndarray,
    var_names: Sequence[str],
    wall_time: Mapping[str, float] | None,
    c2st_options: dict[str, Any] | None,
) -> dict[str, Any]:
    """One method's row of the table (draws ``x``, reference draws ``ref``); ``c2st_options`` is
    ``None`` for the reference itself, whose C2ST is NaN."""
    accuracy = float("nan") if c2st_options is None else c2st(x, ref, **c2st_options)
    ref_mean, ref_sd = ref.mean(0), ref.std(0, ddof=1)
    return {
        "method": name,
        "c2st": accuracy,
        "mean_error": float(np.max(np.abs(x.mean(0) - ref_mean) / ref_sd)),
        "sd_error": float(np.max(np.abs(x.std(0, ddof=1) / ref_sd - 1))),
        "ess": _min_ess(idata, var_names),
        "num_draws": len(x),
        "wall_time": _wall_time(name, idata, wall_time),
    }
