r"""The interface shared by conditional density estimators :math:`q_\phi(z \mid c)`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from .standardize import Standardize

__all__ = ["ConditionalDensityEstimator"]


class ConditionalDensityEstimator(nn.Module):
    r"""A module whose ``forward(context)`` returns a distribution over ``z`` in
    :math:`\mathbb{R}^D` with batch shape ``context.shape[:-1]``.

    Subclasses model the standardized variable :math:`u = (z - \mu)/\sigma`; the statistics
    :math:`\mu, \sigma` (buffer ``standardize``) are set from the training set by
    :meth:`fit_standardization`, and every returned distribution is already over :math:`z`.

    Training minimizes the mean of :meth:`loss` over rows: the negative log density by default,
    a regression loss for estimators whose density takes an ODE solve (flow and score matching).
    """

    #: whether ``log_prob`` solves an ODE (flow and score matching): losses that need the density
    #: of many parameters per row (the atomic APT loss) refuse such an estimator
    density_needs_ode: ClassVar[bool] = False
    #: defaults of :class:`~pyro_lfi.infer.loop.TrainingConfig` that suit this estimator's loss,
    #: taken by :class:`~pyro_lfi.NPE` in place of the general ones (the user's options still win)
    training_defaults: ClassVar[Mapping[str, object]] = MappingProxyType({})

    def __init__(self, features: int, context: int):
        super().__init__()
        self.features = features
        self.context = context
        self.standardize = Standardize((features,))

    def fit_standardization(self, z: torch.Tensor) -> None:
        self.standardize.fit(z)

    def forward(self, context: torch.Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r"""The training loss of each row of ``z`` ``[*batch, D]`` given ``context`` ``[*batch, C]``,
        shape ``batch``: :math:`-\log q(z \mid c)` here (maximum likelihood; the constant
        :math:`\sum_d \log \sigma_d` of the standardization included). Subclasses that fit
        :math:`u = (z - \mu)/\sigma` by another objective override it."""
        return -self(context).log_prob(z)
