r"""Learned likelihoods back in the model: each Simulator site scored by its
:class:`~pyro_lfi.likelihood.NeuralLikelihood`, so that Pyro's own inference runs on it.

``surrogate(model, likelihood)`` is the model under the same effect handler as the tractable
baselines (:func:`~pyro_lfi.baselines.tractable`), with the learned distribution in place of
the simulator: ``pyro.infer.MCMC(NUTS(surrogate(model, likelihood)))``, SVI with an autoguide,
``Predictive``. Inside ``pyro.plate("trials", n)`` the learned single-trial likelihood
factorizes over the trials, :math:`\sum_t \log q(x_t \mid \psi_t)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..baselines.tractable import TractableModel, tractable
from .site_estimator import SiteEstimator

__all__ = ["surrogate"]


def surrogate(model: Callable, likelihoods: SiteEstimator | Iterable[SiteEstimator]) -> TractableModel:
    r"""``model`` with each trained likelihood's (or ratio's) Simulator site scored by it (one per
    site, matched by its ``observed`` name). With a :class:`~pyro_lfi.likelihood.NeuralRatio`
    the site's log density is :math:`\log r(x, \psi)`, so MCMC samples prior times ratio."""
    likelihoods = [likelihoods] if isinstance(likelihoods, SiteEstimator) else list(likelihoods)
    for likelihood in likelihoods:
        if not likelihood.is_built:
            raise ValueError(
                f"the estimator of site '{likelihood.observed}' is not trained: run pyro_lfi.NLE or pyro_lfi.NRE first"
            )
    return tractable(model, {likelihood.observed: likelihood for likelihood in likelihoods})
