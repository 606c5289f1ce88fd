r"""Posterior-predictive check: how far the observation lies from its predictive distribution.

With summary statistics :math:`s(\cdot)` of the observation, :math:`s_o = s(x_o)`, and of the
posterior-predictive simulations, :math:`s_j = s(x_j)`, :math:`x_j \sim p(x \mid \theta_j)`,
:math:`\theta_j \sim q(\theta \mid x_o)`, the distance is the Mahalanobis distance

.. math:: d(s) = \sqrt{(s - \bar s)^\top \hat\Sigma^{+} (s - \bar s)}

under the predictive mean :math:`\bar s` and covariance :math:`\hat\Sigma` (pseudo-inverse), and
the predictive p-value is :math:`\frac1n \#\{j : d(s_j) \ge d(s_o)\}`: small when the observation
is atypical of what the fitted posterior predicts (model misspecification, or a poor posterior).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..arviz_compat import Result, group, group_names

__all__ = ["PredictiveCheck", "predictive_check"]


@dataclass
class PredictiveCheck:
    """Per observed variable: the observation's Mahalanobis distance to the posterior-predictive
    summaries (``distance``) and the predictive p-value (``pvalue``)."""

    distance: dict[str, float]
    pvalue: dict[str, float]


def _mahalanobis(s: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = s - mean
    return np.sqrt(np.maximum(np.einsum("...i,ij,...j->...", d, precision, d), 0.0))


def predictive_check(
    idata: Result,
    summary: Callable[[np.ndarray], np.ndarray] | None = None,
    var_names: Sequence[str] | None = None,
) -> PredictiveCheck:
    """Distance of the observation to its posterior-predictive distribution, per observed
    variable of ``idata``, an ArviZ result (``InferenceData`` or ``DataTree``) with the
    ``posterior_predictive`` and ``observed_data`` groups, as
    ``pyro_lfi.to_inference_data(..., posterior_predictive=True)`` writes them (the same result
    works with ArviZ's posterior-predictive plots: ``plot_ppc`` in 0.x, ``plot_ppc_dist`` in 1.x).

    :param summary: maps data ``[n, *shape]`` to statistics ``[n, k]``; default: the data
        flattened. Predictive draws with non-finite statistics (failed simulations) are dropped.
    :param var_names: observed variables to check (default: all in ``observed_data``).
    """
    for needed in ("posterior_predictive", "observed_data"):
        if needed not in group_names(idata):
            raise ValueError(
                f"idata has no {needed} group: export it with "
                "pyro_lfi.to_inference_data(guide, ..., posterior_predictive=True)"
            )
    observed_data, predictive = group(idata, "observed_data"), group(idata, "posterior_predictive")
    names = list(observed_data.data_vars) if var_names is None else list(var_names)
    distance, pvalue = {}, {}
    for name in names:
        if name not in predictive or name not in observed_data:
            raise ValueError(f"variable {name!r} is not in both posterior_predictive and observed_data")
        observed = observed_data[name].values
        draws = predictive[name].transpose("chain", "draw", ...).values
        draws = draws.reshape((-1,) + draws.shape[2:])
        if draws.shape[1:] != observed.shape:
            raise ValueError(
                f"{name!r}: predictive draws have shape {draws.shape[1:]} but the observation {observed.shape}"
            )
        stat = summary or (lambda x: x.reshape(len(x), -1))
        s_draws = np.asarray(stat(draws), dtype=np.float64)
        s_obs = np.asarray(stat(observed[None]), dtype=np.float64)[0]
        s_draws = s_draws[np.isfinite(s_draws).all(1)]
        if len(s_draws) < 2:
            raise ValueError(f"{name!r}: fewer than two finite predictive summaries")
        mean = s_draws.mean(0)
        precision = np.linalg.pinv(np.atleast_2d(np.cov(s_draws, rowvar=False)))
        d_obs = float(_mahalanobis(s_obs, mean, precision))
        distance[name] = d_obs
        pvalue[name] = float(np.mean(_mahalanobis(s_draws, mean, precision) >= d_obs))
    return PredictiveCheck(distance, pvalue)
