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
from .neural_likelihood import NeuralLikelihood

__all__ = ["surrogate"]


def surrogate(model: Callable, likelihoods: NeuralLikelihood | Iterable[NeuralLikelihood]) -> TractableModel:
    """``model`` with each trained likelihood's Simulator site scored by it (one likelihood per
    site, matched by its ``observed`` name)."""
    likelihoods = [likelihoods] if isinstance(likelihoods, NeuralLikelihood) else list(likelihoods)
    for likelihood in likelihoods:
        if not likelihood.is_built:
            raise ValueError(f"the likelihood of site '{likelihood.observed}' is not trained: run pyro_lfi.NLE first")
    return tractable(model, {likelihood.observed: likelihood for likelihood in likelihoods})
