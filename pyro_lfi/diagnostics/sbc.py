r"""Simulation-based calibration (Talts et al. 2018).

For :math:`(\theta_i, x_i)` drawn from the joint and :math:`L` posterior draws
:math:`\theta_{ij} \sim q(\theta \mid x_i)`, the rank
:math:`r_i = \#\{j : \theta_{ij} < \theta_i\}` of each latent element is uniform on
:math:`\{0, \dots, L\}` when :math:`q` is the true posterior. The randomized PIT
:math:`u_i = (r_i + v_i) / (L + 1)`, :math:`v_i \sim U(0, 1)`, is then exactly :math:`U(0, 1)`,
which is what the uniformity tests and the ECDF-difference plot check: an overconfident
posterior piles ranks at both ends (a U shape), an underconfident one in the middle, a biased
one on one side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from ..arviz_compat import ARVIZ_1, plot_pit_ecdf
from ..guide.posterior import NeuralPosterior
from .draws import CalibrationOptions, calibration_draws

__all__ = ["SBCResult", "sbc"]


def element_labels(name: str, shape: tuple[int, ...]) -> list[str]:
    """``theta[0]``, ``theta[1]``, ... for the elements of a site of ``shape`` (``name`` if scalar)."""
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


@dataclass
class SBCResult:
    """Ranks of the true parameters among posterior draws, per latent site.

    :ivar ranks: site -> integer ranks ``[N, *site_shape]`` in ``{0, ..., L}``.
    :ivar pit: site -> randomized PIT values ``[N, *site_shape]`` in ``(0, 1)``.
    :ivar pvalues: site -> p-values ``site_shape`` of the uniformity test, per element.
    :ivar num_posterior_samples: ``L``.
    :ivar test: ``"ks"`` or ``"chi2"``.
    :ivar seed: seed of the plot's confidence bands.
    """

    ranks: dict[str, np.ndarray]
    pit: dict[str, np.ndarray]
    pvalues: dict[str, np.ndarray]
    num_posterior_samples: int
    test: str
    seed: int | None = None

    def passed(self, alpha: float = 0.01) -> bool:
        """Whether no element rejects uniformity at level ``alpha`` (Bonferroni-corrected over
        all elements)."""
        flat = np.concatenate([p.ravel() for p in self.pvalues.values()])
        return bool(flat.min() >= alpha / flat.size)

    def plot(self, ci_prob: float = 0.95, npoints: int = 100):
        """ECDF-difference plot of each element's PIT against :math:`U(0, 1)`: with ArviZ 0.x
        (``plot_ecdf``) a simultaneous confidence band of probability ``ci_prob`` (Säilynoja et
        al. 2022), with ArviZ 1.x (``plot_ecdf_pit``) its band of the ``pot_c`` uniformity test,
        points outside probability ``ci_prob`` marked. Returns the matplotlib figure."""
        if ARVIZ_1:
            return plot_pit_ecdf(self.pit, ci_prob)
        import arviz as az
        import matplotlib.pyplot as plt

        columns = [
            (label, values)
            for name, pit in self.pit.items()
            for label, values in zip(element_labels(name, pit.shape[1:]), pit.reshape(len(pit), -1).T)
        ]
        ncols = min(len(columns), 4)
        nrows = -(-len(columns) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
        points = np.linspace(0.0, 1.0, npoints)
        for ax, (label, values) in zip(axes.flat, columns):
            az.plot_ecdf(
                values,
                cdf=stats.uniform.cdf,
                rvs=_uniform_rvs,
                eval_points=points,
                difference=True,
                confidence_bands=True,
                ci_prob=ci_prob,
                random_state=self.seed,
                ax=ax,
            )
            ax.set_title(label)
            ax.set_xlabel("fractional rank")
        for ax in axes.flat[len(columns) :]:
            ax.set_visible(False)
        axes[0, 0].set_ylabel("ECDF - uniform")
        fig.tight_layout()
        return fig


def _uniform_rvs(ndraws: int, random_state=None) -> np.ndarray:
    """Draws of U(0, 1) for ArviZ's band calibration (the randomized PIT is continuous)."""
    return stats.uniform.rvs(size=ndraws, random_state=random_state)


def _pvalue(u: np.ndarray, test: str, num_bins: int) -> float:
    if test == "ks":
        return float(stats.kstest(u, "uniform").pvalue)
    counts = np.bincount(np.minimum((u * num_bins).astype(int), num_bins - 1), minlength=num_bins)
    return float(stats.chisquare(counts).pvalue)


def sbc(
    guide: NeuralPosterior,
    model: Callable,
    *args,
    test: Literal["ks", "chi2"] = "ks",
    num_bins: int | None = None,
    options: CalibrationOptions | None = None,
    **kwargs,
) -> SBCResult:
    r"""Simulation-based calibration of an amortized guide, without retraining.

    Simulates ``num_simulations`` :math:`(\theta, x)` pairs of ``model(*args, **kwargs)`` from the
    prior, draws ``num_posterior_samples`` from ``guide`` at every :math:`x` in batched calls, and
    ranks each latent element's true value among its draws. Uniformity is tested per element on
    the randomized PIT: ``"ks"`` (Kolmogorov-Smirnov against :math:`U(0,1)`) or ``"chi2"``
    (Pearson's test on ``num_bins`` equal bins, default :math:`\min(20, N/5)`).

    :param options: the draws to take (:class:`~pyro_lfi.diagnostics.CalibrationOptions`, with 100
        draws per simulation by default; its fields, e.g. ``num_simulations``, may be given as
        keywords instead); other keywords go to the model.
    :returns: an :class:`SBCResult` (``.ranks``, ``.pvalues``, ``.passed()``, ``.plot()``).
    """
    if test not in ("ks", "chi2"):
        raise ValueError(f"test must be 'ks' or 'chi2', got {test!r}")
    options = options or CalibrationOptions(num_posterior_samples=100)
    draws = calibration_draws(guide, model, *args, options=options, **kwargs)
    seed = draws.options.seed
    n, num_draws = draws.num_simulations, draws.num_posterior_samples
    bins = num_bins or max(2, min(20, n // 5))
    rng = np.random.default_rng(seed)
    ranks, pit, pvalues = {}, {}, {}
    for name, truth in draws.truth.items():
        rank = (draws.draws[name] < truth.unsqueeze(0)).sum(0).cpu().numpy()
        u = (rank + rng.uniform(size=rank.shape)) / (num_draws + 1)
        flat = u.reshape(n, -1)
        ranks[name], pit[name] = rank, u
        pvalues[name] = np.array([_pvalue(col, test, bins) for col in flat.T]).reshape(rank.shape[1:])
    return SBCResult(ranks, pit, pvalues, num_draws, test, seed)
