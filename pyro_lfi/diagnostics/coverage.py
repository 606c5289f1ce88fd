r"""Expected coverage of credible regions: from the guide's density (HPD regions) and TARP.

Both assign each simulation :math:`(\theta_i, x_i)` a credibility
:math:`f_i \in [0, 1]`, the smallest credible level whose region contains :math:`\theta_i`,
estimated from :math:`L` draws :math:`\theta_{ij} \sim q(\theta \mid x_i)`:

* highest-density regions: :math:`f_i = \#\{j : q(\theta_{ij} \mid x_i) > q(\theta_i \mid x_i)\} / L`;
* TARP (Lemos et al. 2023): :math:`f_i = \#\{j : \lVert\theta_{ij} - \theta^r_i\rVert <
  \lVert\theta_i - \theta^r_i\rVert\} / L` for a random reference point :math:`\theta^r_i`
  (balls around it), which needs samples only.

The empirical coverage of level :math:`\alpha` is :math:`\frac1N \sum_i 1[f_i < \alpha]`; it equals
:math:`\alpha` for every :math:`\alpha` when :math:`q` is calibrated, lies below the diagonal for an
overconfident posterior and above it for an underconfident one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..guide.posterior import NeuralPosterior
from .draws import CalibrationDraws, CalibrationOptions, calibration_draws

__all__ = ["CoverageResult", "expected_coverage", "tarp"]


@dataclass
class CoverageResult:
    """Empirical coverage of credible regions at each credible level.

    :ivar levels: credible levels :math:`\\alpha` ``[K]``.
    :ivar coverage: empirical coverage at each level ``[K]``.
    :ivar credibility: per simulation, the smallest level whose region contains the truth ``[N]``.
    :ivar method: ``"hpd"`` or ``"tarp"``.
    """

    levels: np.ndarray
    coverage: np.ndarray
    credibility: np.ndarray
    method: str

    def band(self, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise binomial interval of probability ``prob`` for the coverage of a calibrated
        posterior with this number of simulations."""
        n = len(self.credibility)
        low, high = stats.binom.interval(prob, n, self.levels)
        return low / n, high / n

    def max_error(self) -> float:
        """Largest absolute gap between empirical coverage and credible level."""
        return float(np.abs(self.coverage - self.levels).max())

    def pvalue(self) -> float:
        """Kolmogorov-Smirnov p-value of the credibilities against :math:`U(0, 1)` (what a
        calibrated posterior gives)."""
        return float(stats.kstest(self.credibility, "uniform").pvalue)

    def plot(self, prob: float = 0.95, ax=None):
        """Coverage against credible level, with the diagonal and a binomial band of
        probability ``prob``. Returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(3.6, 3.4))
        else:
            fig = ax.figure
        low, high = self.band(prob)
        ax.fill_between(self.levels, low, high, color="0.85", label=f"{prob:.0%} band")
        ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1)
        ax.plot(self.levels, self.coverage, color="C0", label=self.method.upper())
        ax.set_xlabel("credible level")
        ax.set_ylabel("empirical coverage")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left")
        fig.tight_layout()
        return fig


def _result(credibility: torch.Tensor, levels, method: str) -> CoverageResult:
    f = credibility.cpu().numpy().astype(np.float64)
    levels = np.linspace(0.0, 1.0, 21) if levels is None else np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or ((levels < 0) | (levels > 1)).any():
        raise ValueError("levels must be a 1-d sequence of credible levels in [0, 1]")
    coverage = (f[None, :] < levels[:, None]).mean(1)
    return CoverageResult(levels, coverage, f, method)


def expected_coverage(
    guide: NeuralPosterior,
    model: Callable,
    *args,
    levels=None,
    options: CalibrationOptions | None = None,
    **kwargs,
) -> CoverageResult:
    """Coverage of the guide's highest-density credible regions over prior-predictive simulations
    of ``model(*args, **kwargs)``, at ``levels`` (default 0, 0.05, ..., 1). Densities are those of
    the constrained parameters, as :meth:`NeuralPosterior.log_prob` gives them.

    :param options: the draws to take (:class:`~pyro_lfi.diagnostics.CalibrationOptions`; its fields,
        e.g. ``num_simulations``, may be given as keywords instead); other keywords go to the model.
    """
    draws = calibration_draws(guide, model, *args, options=options, log_prob=True, **kwargs)
    credibility = (draws.log_q_draws > draws.log_q_truth.unsqueeze(0)).double().mean(0)
    return _result(credibility, levels, "hpd")


def _flat(values: dict[str, torch.Tensor], batch_dims: int) -> torch.Tensor:
    return torch.cat([v.reshape(v.shape[:batch_dims] + (-1,)) for v in values.values()], dim=-1)


def tarp_credibility(draws: CalibrationDraws, seed: int | None = 0) -> torch.Tensor:
    """TARP's :math:`f_i`, with parameters z-scored by the truths' mean and sd and reference
    points uniform in the bounding box of the z-scored truths (as the ``tarp`` package does)."""
    truth = _flat(draws.truth, 1).double()
    samples = _flat(draws.draws, 2).double()
    mean, std = truth.mean(0), truth.std(0).clamp_min(1e-12)
    truth, samples = (truth - mean) / std, (samples - mean) / std
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    low, high = truth.min(0).values, truth.max(0).values
    reference = low + (high - low) * torch.rand(truth.shape, generator=generator, dtype=truth.dtype)
    d_truth = (truth - reference).norm(dim=-1)
    d_samples = (samples - reference.unsqueeze(0)).norm(dim=-1)
    return (d_samples < d_truth.unsqueeze(0)).double().mean(0)


def tarp(
    guide: NeuralPosterior,
    model: Callable,
    *args,
    levels=None,
    options: CalibrationOptions | None = None,
    **kwargs,
) -> CoverageResult:
    """Tests of Accuracy with Random Points (Lemos et al. 2023): expected coverage of balls
    around random reference points, from posterior samples alone, over prior-predictive
    simulations of ``model(*args, **kwargs)``. Coverage equal to the level for every level is
    necessary and sufficient for a calibrated posterior (given the random references).

    :param options: the draws to take (:class:`~pyro_lfi.diagnostics.CalibrationOptions`; its fields,
        e.g. ``num_simulations``, may be given as keywords instead); other keywords go to the model.
    """
    draws = calibration_draws(guide, model, *args, options=options, **kwargs)
    return _result(tarp_credibility(draws, draws.options.seed), levels, "tarp")
