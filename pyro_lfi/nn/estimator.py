r"""The interface shared by conditional density estimators :math:`q_\phi(z \mid c)`."""

from __future__ import annotations

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
    """

    def __init__(self, features: int, context: int):
        super().__init__()
        self.features = features
        self.context = context
        self.standardize = Standardize((features,))

    def fit_standardization(self, z: torch.Tensor) -> None:
        self.standardize.fit(z)

    def forward(self, context: torch.Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError
