r"""A classifier of where a simulator fails: the logit of :math:`P(\text{valid} \mid z)`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import logsigmoid

from .mlp import MLP
from .standardize import Standardize

__all__ = ["ValidityClassifier"]


class ValidityClassifier(nn.Module):
    """An MLP on the standardized inputs (latents, or a simulator's parameters) giving the logit
    of :math:`P(\\text{valid} \\mid z)`; fitted by :func:`pyro_lfi.infer.validity.fit_classifier`."""

    def __init__(self, features: int, hidden_features: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.standardize = Standardize((features,))
        self.net = MLP(features, 1, hidden_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(z)).squeeze(-1)

    def log_prob_valid(self, z: torch.Tensor) -> torch.Tensor:
        return logsigmoid(self(z))
