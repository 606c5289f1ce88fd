r"""Neural likelihood estimation (Papamakarios et al. 2019): fit :math:`q_\phi(x \mid \psi)` of a
Simulator site to simulations, by

.. math:: \min_\phi\; -\frac1m \sum_{i=1}^m \log q_\phi(x_i \mid \psi_i),

over every valid simulated trial :math:`(\psi_i, x_i)`; its minimizer is the simulator's
likelihood wherever the training parameters :math:`\psi` have mass, whatever the prior. Then
:func:`~pyro_lfi.likelihood.surrogate` puts it back into the model for Pyro's own inference.
"""

from __future__ import annotations

import torch

from ..likelihood import NeuralLikelihood
from .npe import OptimSpec
from .site_estimation import SiteEstimation

__all__ = ["NLE", "nle_loss"]


def nle_loss(likelihood: NeuralLikelihood, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`-\frac1m \sum_i \log q_\phi(x_i \mid \psi_i)` for flat parameters ``psi``."""
    return -likelihood.conditional(psi).log_prob(x.reshape(len(x), -1)).mean()


class NLE(SiteEstimation):
    """Neural likelihood estimation of ``likelihood``'s Simulator site of ``model``.

    :param model: the Pyro model.
    :param likelihood: a :class:`~pyro_lfi.likelihood.NeuralLikelihood` of one of its sites.
    :param optim: as for :class:`~pyro_lfi.NPE`.
    :param config: defaults of :class:`~pyro_lfi.TrainingConfig`, overridable per ``train``.
    """

    estimator_class = NeuralLikelihood

    def __init__(self, model, likelihood: NeuralLikelihood, optim: OptimSpec = None, **config):
        super().__init__(model, likelihood, optim, **config)

    @property
    def likelihood(self) -> NeuralLikelihood:
        return self.estimator

    def loss(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return nle_loss(self.estimator, psi, x)
