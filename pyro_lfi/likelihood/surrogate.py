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

from ..baselines.tractable import TractableModel
from .reach import check_reach
from .site_estimator import SiteEstimator

__all__ = ["Surrogate", "surrogate"]


class Surrogate(TractableModel):
    """A model with learned likelihoods in place of its simulators (see :func:`surrogate`); its
    first call checks that the model's prior keeps each site's parameters where the estimator
    was trained (:func:`~pyro_lfi.likelihood.reach.check_reach`)."""

    def __init__(self, model: Callable, likelihoods: list[SiteEstimator], check_reach: bool = True):
        super().__init__(model, {likelihood.observed: likelihood for likelihood in likelihoods})
        self.unchecked = list(likelihoods) if check_reach else []

    def __call__(self, *args, **kwargs):
        for likelihood in self.unchecked:
            check_reach(self.model, likelihood, args, kwargs)
        self.unchecked = []
        return super().__call__(*args, **kwargs)


def surrogate(
    model: Callable, likelihoods: SiteEstimator | Iterable[SiteEstimator], check_reach: bool = True
) -> Surrogate:
    r"""``model`` with each trained likelihood's (or ratio's) Simulator site scored by it (one per
    site, matched by its ``observed`` name). With a :class:`~pyro_lfi.likelihood.NeuralRatio`
    the site's log density is :math:`\log r(x, \psi)`, so MCMC samples prior times ratio.

    :param check_reach: at the first call, refuse a model whose prior takes a site's parameters
        beyond where its estimator was trained (:mod:`pyro_lfi.likelihood.reach`).
    """
    likelihoods = [likelihoods] if isinstance(likelihoods, SiteEstimator) else list(likelihoods)
    for likelihood in likelihoods:
        if not likelihood.is_built:
            raise ValueError(
                f"the estimator of site '{likelihood.observed}' is not trained: run pyro_lfi.NLE or pyro_lfi.NRE first"
            )
    return Surrogate(model, likelihoods, check_reach)
