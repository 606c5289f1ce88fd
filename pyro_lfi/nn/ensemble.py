r"""Ensembles of conditional density estimators: a uniform mixture of :math:`K` independently
initialized members of one kind, trained together,

.. math:: q(z \mid c) = \frac1K \sum_{k=1}^K q_k(z \mid c), \qquad
    \mathcal{L} = \frac1K \sum_{k=1}^K \mathcal{L}_k(z, c).

Each member is trained on its own loss :math:`\mathcal{L}_k` (the loss does not mix the members'
densities, so each is what it would be trained alone on the same batches), and the ensemble's
density averages theirs: wider where they disagree, which guards against the overconfident
posteriors single estimators can give (Lakshminarayanan et al. 2017; Hermans et al. 2022,
*A Trust Crisis in Simulation-Based Inference?*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Distribution

from .estimator import ConditionalDensityEstimator

__all__ = ["Ensemble", "UniformMixture"]


class UniformMixture(Distribution):
    r"""The uniform mixture :math:`\frac1K \sum_k p_k` of distributions with equal batch and
    event shapes: ``log_prob`` by log-sum-exp, draws from a uniformly chosen component."""

    arg_constraints: dict = {}

    def __init__(self, components: Sequence[Distribution]):
        self.components = tuple(components)
        first = self.components[0]
        if any(c.batch_shape != first.batch_shape or c.event_shape != first.event_shape for c in self.components):
            raise ValueError("the components of a mixture need equal batch and event shapes")
        super().__init__(first.batch_shape, first.event_shape, validate_args=False)

    @property
    def support(self):
        return self.components[0].support

    @property
    def has_rsample(self) -> bool:
        return all(c.has_rsample for c in self.components)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_p = torch.stack([c.log_prob(value) for c in self.components])
        return torch.logsumexp(log_p, 0) - math.log(len(self.components))

    def _choose(self, draws: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
        """One of the ``K`` components' draws ``[K, *sample, *batch, *event]`` per sample and row."""
        index = torch.randint(len(self.components), tuple(sample_shape) + tuple(self.batch_shape), device=draws.device)
        index = index.reshape(index.shape + (1,) * len(self.event_shape)).expand(draws.shape[1:])
        return torch.take_along_dim(draws, index[None], dim=0)[0]

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            sample_shape = torch.Size(sample_shape)
            return self._choose(torch.stack([c.sample(sample_shape) for c in self.components]), sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        return self._choose(torch.stack([c.rsample(sample_shape) for c in self.components]), sample_shape)


class Ensemble(ConditionalDensityEstimator):
    """A uniform mixture of ``members`` (see the module docs), e.g. built by
    ``NeuralPosterior(model, estimator="nsf", ensemble=5)``; each member keeps its own
    standardization, fitted to the same training set."""

    def __init__(self, members: Sequence[ConditionalDensityEstimator]):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        super().__init__(members[0].features, members[0].context)
        self.members = nn.ModuleList(members)
        self.density_needs_ode = any(m.density_needs_ode for m in members)
        defaults = members[0].training_defaults  # members of different kinds: the general ones
        self.training_defaults = defaults if all(m.training_defaults == defaults for m in members) else {}

    def fit_standardization(self, z: torch.Tensor) -> None:
        for member in self.members:
            member.fit_standardization(z)

    def forward(self, context: torch.Tensor) -> Distribution:
        return UniformMixture([member(context) for member in self.members])

    def loss(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.stack([member.loss(z, context) for member in self.members]).mean(0)
