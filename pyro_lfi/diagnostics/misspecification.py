r"""Model-misspecification check in the guide's embedding space (Schmitt et al. 2023).

A guide trained on simulations has only seen the model's prior predictive :math:`p(x)`; an
observation unlike anything the model produces is outside its training distribution, and its
posterior is not to be trusted however confident it looks. With the trained embedding
:math:`h = \mathrm{embed}(x)` (standardization and embedding net), the observations
:math:`h^o_{1..m}` are compared with :math:`N` prior-predictive simulations :math:`h_{1..N}` by the
squared maximum mean discrepancy (biased V-statistic) under a Gaussian kernel
:math:`k(a, b) = \exp(-\lVert a - b \rVert^2 / 2\ell^2)`:

.. math::

    \widehat{\mathrm{MMD}}^2 = \frac{1}{m^2} \sum_{i,j} k(h^o_i, h^o_j)
        + \frac{1}{N^2} \sum_{k,l} k(h_k, h_l) - \frac{2}{mN} \sum_{i,k} k(h^o_i, h_k),

with :math:`\ell` the median pairwise distance among the simulations' embeddings (the median
heuristic; fixed once, so that every statistic below uses the same kernel). The null
distribution is that of the same statistic for ``num_null`` sets of :math:`m` further simulations
("observations" that the model did produce), disjoint from the reference and from each other,
and the p-value is :math:`(1 + \#\{\text{null} \ge \text{observed}\}) / (1 + \text{num\_null})`:
small when the observation is atypical of the model (misspecification).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..guide.posterior import NeuralPosterior
from ..seeding import preserved_rng, seeded
from .draws import valid_prior_predictive

__all__ = ["MisspecificationResult", "misspecification"]

#: Rows of the reference used to set the kernel bandwidth, and per block of a kernel mean.
_BANDWIDTH_ROWS = 1000
_BLOCK = 2048


@dataclass
class MisspecificationResult:
    """The observations' squared MMD to the model's prior predictive, in the guide's embedding.

    :ivar mmd: :math:`\\widehat{\\mathrm{MMD}}^2` of the observations against the reference.
    :ivar null: the same statistic for ``num_null`` sets of simulated observations.
    :ivar pvalue: :math:`(1 + \\#\\{\\text{null} \\ge \\text{mmd}\\}) / (1 + \\text{num\\_null})`.
    :ivar bandwidth: the Gaussian kernel's length scale :math:`\\ell`.
    :ivar num_observations: :math:`m`, observations compared at once.
    :ivar num_reference: :math:`N`, reference simulations.
    """

    mmd: float
    null: np.ndarray
    pvalue: float
    bandwidth: float
    num_observations: int
    num_reference: int

    def passed(self, alpha: float = 0.05) -> bool:
        """Whether the observations are compatible with the model at level ``alpha`` (``False``:
        misspecified, or at least outside what the guide was trained on)."""
        return bool(self.pvalue >= alpha)

    def plot(self, ax=None):
        """Histogram of the null distribution with a line at the observed statistic; draws on
        ``ax`` (a new figure if ``None``) and returns the Axes. Never shows or blocks."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(4.5, 3.0))
        ax.hist(self.null, bins="auto", density=True, alpha=0.6, label="null (simulated observations)")
        ax.axvline(self.mmd, color="C3", label=f"observed (p = {self.pvalue:.3g})")
        ax.set_xlabel("squared MMD in the embedding")
        ax.set_ylabel("density")
        ax.legend()
        return ax


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Row means of the Gaussian kernel between ``a`` ``[n, d]`` and ``b`` ``[k, d]``: ``[n]``
    (in blocks of ``b``, so that large sets never build the whole kernel matrix)."""
    total = torch.zeros(len(a), dtype=a.dtype, device=a.device)
    for start in range(0, len(b), _BLOCK):
        d2 = torch.cdist(a, b[start : start + _BLOCK]).square()
        total += torch.exp(-d2 / (2 * bandwidth**2)).sum(-1)
    return total / len(b)


def _median_bandwidth(h: torch.Tensor) -> float:
    """The median heuristic: the median pairwise distance among (at most 1000 of) the rows."""
    if len(h) > _BANDWIDTH_ROWS:
        h = h[torch.randperm(len(h), device=h.device)[:_BANDWIDTH_ROWS]]
    d = torch.cdist(h, h)
    off_diagonal = d[~torch.eye(len(h), dtype=torch.bool, device=h.device)]
    bandwidth = float(off_diagonal.median())
    return bandwidth if bandwidth > 0 else 1.0


def _mmd_to_reference(obs: torch.Tensor, to_reference: torch.Tensor, ref_term: float, bandwidth: float) -> float:
    """:math:`\\widehat{\\mathrm{MMD}}^2` of ``obs`` ``[m, d]`` given the kernel means of its rows
    to the reference ``[m]`` and the reference's own kernel mean."""
    return float(_kernel_mean(obs, obs, bandwidth).mean() + ref_term - 2 * to_reference.mean())


def _simulated_flat(
    guide: NeuralPosterior, model: Callable, args: tuple, num: int, seed, model_kwargs: dict
) -> torch.Tensor:
    """Flat observations ``[n_valid, *x_shape]`` of ``num`` prior-predictive simulations."""
    valid = valid_prior_predictive(guide, model, num, args, seed, model_kwargs)
    return guide.require_built().flat_data({n: valid.values[n] for n in guide.observed})


def _observations(guide: NeuralPosterior, args: tuple, kwargs: dict) -> torch.Tensor:
    """The observation(s) the model receives, as rows ``[m, *x_shape]``."""
    return guide.observation(*args, **kwargs).reshape((-1, *guide.x_shape))  # shapes checked there


@torch.no_grad()
def misspecification(
    guide: NeuralPosterior,
    model: Callable | None = None,
    *args,
    num_simulations: int = 1000,
    num_null: int = 200,
    seed: int | None = 0,
    model_kwargs: dict | None = None,
    **kwargs,
) -> MisspecificationResult:
    r"""Test whether the observation could have come from ``model``, by the squared MMD between
    its embedding under the trained ``guide`` and those of prior-predictive simulations (see the
    module docs). ``guide.observation(*args, **kwargs)`` is the observation (e.g. ``x=x_o``; a
    batch of ``m`` observations is compared as one set of ``m``).

    :param model: the model to simulate (default: ``guide.model``); ``args`` and ``kwargs`` are its
        arguments, the observed sites left free.
    :param num_simulations: :math:`N`, reference simulations.
    :param num_null: sets of :math:`m` further simulations whose statistic forms the null.
    :param seed: seeds the simulations (the global RNG state is left untouched).
    :param model_kwargs: the model's keyword arguments, for one whose name is one of these.
    :returns: a :class:`MisspecificationResult` (``.mmd``, ``.null``, ``.pvalue``, ``.passed()``,
        ``.plot()``).
    :raises NotFittedError: if the guide is not trained.
    """
    if num_simulations < 2 or num_null < 1:
        raise ValueError(f"num_simulations must be 2 or more and num_null positive, got {num_simulations}, {num_null}")
    guide.require_built()
    kwargs = {**kwargs, **(model_kwargs or {})}
    with preserved_rng(), seeded(seed):  # reading the observation runs the model, too
        obs = _observations(guide, args, kwargs)
        m = len(obs)
        x = _simulated_flat(guide, model or guide.model, args, num_simulations + num_null * m, seed, kwargs)
        if len(x) < num_null * m + 2:
            raise ValueError(
                f"only {len(x)} of {num_simulations + num_null * m} simulations are valid: too few for "
                f"{num_null} null sets of {m} and a reference; raise num_simulations or lower num_null"
            )
        h, h_obs = guide.embed(x), guide.embed(obs)
        h_null, h_ref = h[: num_null * m], h[num_null * m :]
        bandwidth = _median_bandwidth(h_ref)
    ref_term = float(_kernel_mean(h_ref, h_ref, bandwidth).mean())
    mmd = _mmd_to_reference(h_obs, _kernel_mean(h_obs, h_ref, bandwidth), ref_term, bandwidth)
    null_to_ref = _kernel_mean(h_null, h_ref, bandwidth).reshape(num_null, m)
    null = np.array(
        [_mmd_to_reference(h_null[i * m : (i + 1) * m], null_to_ref[i], ref_term, bandwidth) for i in range(num_null)]
    )
    pvalue = float((1 + np.sum(null >= mmd)) / (1 + num_null))
    return MisspecificationResult(mmd, null, pvalue, bandwidth, m, len(h_ref))
