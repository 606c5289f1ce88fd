r"""Neural ratio estimation: train :math:`\log r_\phi(x, \psi)` as the logit of a classifier of
pairs drawn together, :math:`(\psi_i, x_i)`, against pairs drawn apart, :math:`(\psi_{\pi(i)},
x_i)` with :math:`\pi` a random permutation of the batch.

``"nre-a"`` (Hermans et al. 2020): the binary cross-entropy

.. math:: \ell = -\frac1n \sum_i \bigl[\log \sigma(d_{i,i}) + \log(1 - \sigma(d_{\pi(i),i}))\bigr],

minimized by :math:`d = \log p(x \mid \psi) / p(x)`. ``"bnre"`` (Delaunoy et al. 2022) adds
:math:`\lambda\,(\frac1n\sum_i \sigma(d_{i,i}) + \sigma(d_{\pi(i),i}) - 1)^2`, the balancing
condition, which keeps the classifier from being overconfident (conservative posteriors).
"""

from __future__ import annotations

import torch
from torch.nn.functional import logsigmoid

from ..likelihood import NeuralRatio
from .npe import OptimSpec
from .site_estimation import SiteEstimation

__all__ = ["LOSSES", "NRE", "bnre_loss", "nre_a_loss"]


def _logits(ratio: NeuralRatio, psi: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the pairs drawn together and of the pairs drawn apart."""
    flat = x.reshape(len(x), -1)
    apart = psi[torch.randperm(len(psi), device=psi.device)]
    return ratio.logit(psi, flat), ratio.logit(apart, flat)


def nre_a_loss(ratio: NeuralRatio, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    together, apart = _logits(ratio, psi, x)
    return -(logsigmoid(together) + logsigmoid(-apart)).mean()


def bnre_loss(ratio: NeuralRatio, psi: torch.Tensor, x: torch.Tensor, regularization: float = 100.0) -> torch.Tensor:
    together, apart = _logits(ratio, psi, x)
    balance = (torch.sigmoid(together) + torch.sigmoid(apart)).mean() - 1.0
    return -(logsigmoid(together) + logsigmoid(-apart)).mean() + regularization * balance**2


#: the losses ``NRE(loss=...)`` knows
LOSSES = {"nre-a": nre_a_loss, "bnre": bnre_loss}


class NRE(SiteEstimation):
    """Neural ratio estimation of ``ratio``'s Simulator site of ``model`` with ``loss``
    (``"nre-a"`` or ``"bnre"``); ``config`` as for :class:`~pyro_lfi.NPE`."""

    estimator_class = NeuralRatio

    def __init__(self, model, ratio: NeuralRatio, loss: str = "nre-a", optim: OptimSpec = None, **config):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose one of {tuple(LOSSES)}")
        super().__init__(model, ratio, optim, **config)
        self.loss_fn = LOSSES[loss]

    @property
    def ratio(self) -> NeuralRatio:
        return self.estimator

    def loss(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.estimator, psi, x)
