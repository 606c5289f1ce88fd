r"""Neural ratio estimation: train :math:`d_\phi(x, \psi) \approx \log p(x \mid \psi) / p(x)`
as the logit of a classifier of pairs :math:`(\psi_i, x_i)` drawn together against parameters
drawn apart (other rows' :math:`\psi_j`, from the marginal of the training proposal).

``"nre-a"`` (Hermans et al. 2020): the binary cross-entropy, with :math:`\pi` a random
permutation of the batch,

.. math:: \ell = -\frac1n \sum_i \bigl[\log \sigma(d_{i,i}) + \log(1 - \sigma(d_{\pi(i),i}))\bigr].

``"bnre"`` (Delaunoy et al. 2022) adds :math:`\lambda\,(\frac1n\sum_i \sigma(d_{i,i}) +
\sigma(d_{\pi(i),i}) - 1)^2`, the balancing condition, which keeps the classifier from being
overconfident (conservative posteriors).

``"nre-c"`` (Miller et al. 2022): a :math:`K+1`-class problem. Each :math:`x_i` is shown
:math:`K` parameters, either all drawn apart (class 0, probability :math:`p_0 = 1/(1+\gamma)`)
or with its own :math:`\psi_i` in the first place (probability :math:`\gamma/(1+\gamma)`), and

.. math:: q(0 \mid x, \Psi) = \frac{K}{K + \gamma \sum_k e^{d(x, \psi_k)}}, \qquad
    q(k \mid x, \Psi) = \frac{\gamma\, e^{d(x, \psi_k)}}{K + \gamma \sum_{k'} e^{d(x, \psi_{k'})}},

.. math:: \ell = -\frac1n \sum_i \Bigl[\tfrac{1}{1+\gamma} \log q(0 \mid x_i, \Psi^\text{apart}_i)
    + \tfrac{\gamma}{1+\gamma} \log q(1 \mid x_i, \Psi^\text{together}_i)\Bigr].

Its minimizer is the ratio itself, not only up to a constant (NRE-A's is too; NRE-B's is not),
and it generalizes NRE-A (:math:`K = 1`, :math:`\gamma = 1`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn.functional import logsigmoid

from ..likelihood import NeuralRatio
from .losses import other_rows
from .npe import OptimSpec
from .site_estimation import SiteEstimation

__all__ = ["LOSSES", "NRE", "bnre_loss", "nre_a_loss", "nre_c_loss"]


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


def nre_c_loss(
    ratio: NeuralRatio, psi: torch.Tensor, x: torch.Tensor, num_atoms: int = 10, gamma: float = 1.0
) -> torch.Tensor:
    """The contrastive loss of Miller et al. (2022) with ``num_atoms`` :math:`K` and ``gamma``
    (:math:`K` is at most the batch size minus one)."""
    n = len(psi)
    k = min(num_atoms, n - 1)
    flat = x.reshape(n, -1)
    others = other_rows(n, k, psi.device)  # [n, K]
    together = torch.cat([torch.arange(n, device=psi.device)[:, None], others[:, 1:]], 1)
    index = torch.cat([others, together], 1)  # [n, 2K]: K apart, then K with the own row first
    d = ratio.logit(psi[index], flat[:, None].expand(n, 2 * k, flat.shape[-1]))
    log_k, log_gamma = math.log(k), math.log(gamma)

    def log_norm(logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([log_gamma + logits, torch.full_like(logits[:, :1], log_k)], 1).logsumexp(1)

    apart, own = d[:, :k], d[:, k:]
    log_q0 = log_k - log_norm(apart)
    log_q1 = log_gamma + own[:, 0] - log_norm(own)
    return -(log_q0 + gamma * log_q1).mean() / (1.0 + gamma)


#: the losses ``NRE(loss=...)`` knows
LOSSES = {"nre-a": nre_a_loss, "bnre": bnre_loss, "nre-c": nre_c_loss}


class NRE(SiteEstimation):
    """Neural ratio estimation of ``ratio``'s Simulator site of ``model`` with ``loss``
    (``"nre-a"``, ``"bnre"`` or ``"nre-c"``); ``config`` as for :class:`~pyro_lfi.NPE`.

    :param num_atoms: NRE-C: :math:`K`, the parameters each output is shown (at most the batch
        size minus one).
    :param gamma: NRE-C: odds :math:`\\gamma` of a row's own parameters being among them.
    :param regularization: BNRE: weight :math:`\\lambda` of the balancing condition.
    """

    estimator_class = NeuralRatio

    def __init__(
        self, model, ratio: NeuralRatio, loss: str = "nre-c", optim: OptimSpec = None, *, num_atoms: int = 10,
        gamma: float = 1.0, regularization: float = 100.0, **config,
    ):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose one of {tuple(LOSSES)}")
        if num_atoms < 1 or gamma <= 0 or regularization < 0:
            raise ValueError(
                f"need num_atoms >= 1, gamma > 0 and regularization >= 0; got {num_atoms}, {gamma}, {regularization}"
            )
        super().__init__(model, ratio, optim, **config)
        options = {"nre-a": {}, "bnre": {"regularization": regularization},
                   "nre-c": {"num_atoms": num_atoms, "gamma": gamma}}[loss]
        self.loss_name = loss
        self.loss_fn = functools.partial(LOSSES[loss], **options)

    @property
    def ratio(self) -> NeuralRatio:
        return self.estimator

    def loss(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.estimator, psi, x)
