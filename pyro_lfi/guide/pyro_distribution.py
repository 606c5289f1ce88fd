"""Any torch distribution at a Pyro sample site."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import Distribution

__all__ = ["PyroDistribution"]


class PyroDistribution(dist.TorchDistribution):
    """Lets any :class:`torch.distributions.Distribution` (e.g. a flow's) be used at a Pyro
    sample site, which needs Pyro's distribution interface (``expand``, ``shape``, ...)."""

    arg_constraints: dict = {}

    def __init__(self, base: Distribution):
        self.base = base
        self.has_rsample = base.has_rsample
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def sample(self, sample_shape=torch.Size()):
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)
