r"""A learned likelihood :math:`q_\phi(x \mid \psi)` of one Simulator site, a Pyro distribution
factory that replaces the simulator where the model must score data (see :func:`surrogate`).

The site's parameters :math:`\psi` (``Simulator(fn, *params)``, each flattened and concatenated,
then standardized, then through an optional embedding net) are the context of a conditional
density estimator over the flattened output :math:`x` of one trial. Trained by
:class:`~pyro_lfi.infer.nle.NLE` on simulations, by maximum likelihood:
:math:`\min_\phi -\frac1n\sum_i \log q_\phi(x_i \mid \psi_i)`.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import nn

from ..guide.estimators import EstimatorSpec, check_estimator_spec, make_estimator
from ..nn import ConditionalDensityEstimator, Standardize
from .site_estimator import SiteEstimator

__all__ = ["LearnedLikelihood", "NeuralLikelihood"]


class NeuralLikelihood(SiteEstimator):
    r""":math:`q_\phi(x \mid \psi)` of the Simulator site ``observed`` of ``model``.

    :param model: the Pyro model.
    :param observed: the name of the Simulator site.
    :param estimator: ``"nsf"``, ``"maf"``, ``"mdn"``, or a callable as for
        :class:`~pyro_lfi.NeuralPosterior`.
    :param embedding_net: maps the standardized parameters ``[*batch, P]`` to features.
    :param estimator_kwargs: passed to the estimator.
    """

    def __init__(self, model: Callable, observed: str = "x", estimator: EstimatorSpec = "nsf",
                 embedding_net: nn.Module | None = None, **estimator_kwargs):
        super().__init__(model, observed)
        check_estimator_spec(estimator)
        self.estimator_spec, self.estimator_kwargs = estimator, estimator_kwargs
        self.embedding_net = embedding_net if embedding_net is not None else nn.Identity()
        self.param_standardize: Standardize | None = None
        self.estimator: ConditionalDensityEstimator | None = None

    def options(self) -> dict:
        if not isinstance(self.estimator_spec, str):
            return dict(self.estimator_kwargs)  # load(..., estimator=the same callable)
        return {"estimator": self.estimator_spec, **self.estimator_kwargs}

    def create(self, psi: torch.Tensor, x: torch.Tensor) -> None:
        self.param_standardize = Standardize((psi.shape[-1],))
        self.param_standardize.fit(psi)
        with torch.no_grad():
            context = self.embedding_net(torch.zeros(2, psi.shape[-1])).shape[-1]
        self.estimator = make_estimator(self.estimator_spec, x.shape[-1], context, self.estimator_kwargs)
        self.estimator.fit_standardization(x)

    def conditional(self, psi: torch.Tensor) -> torch.distributions.Distribution:
        r""":math:`q(x_\text{flat} \mid \psi)` for flat parameters ``psi`` ``[*batch, P]``."""
        self.require_built()
        return self.estimator(self.embedding_net(self.param_standardize(psi)))

    def forward(self, *params: torch.Tensor) -> LearnedLikelihood:
        """The learned distribution of the site given the Simulator's parameters, as the model
        passes them (a factory for :func:`~pyro_lfi.baselines.tractable`)."""
        psi, batch = self.flat_params(params)
        return LearnedLikelihood(self, psi, batch)


class LearnedLikelihood(dist.TorchDistribution):
    """The Pyro distribution of a :class:`NeuralLikelihood` at given parameters: batch shape of
    the parameters (their event dims as in training removed), event shape of one trial."""

    arg_constraints: dict = {}
    support = dist.constraints.real

    def __init__(self, likelihood: NeuralLikelihood, psi: torch.Tensor, batch_shape: torch.Size):
        self.likelihood, self.psi = likelihood, psi
        super().__init__(batch_shape, likelihood.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> LearnedLikelihood:
        batch_shape = torch.Size(batch_shape)
        return LearnedLikelihood(self.likelihood, self.psi.expand(batch_shape + self.psi.shape[-1:]), batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        events = len(self.event_shape)
        batch = torch.broadcast_shapes(value.shape[: value.dim() - events], self.batch_shape)
        flat = value.expand(batch + self.event_shape).reshape(batch + (-1,))
        psi = self.psi.expand(batch + self.psi.shape[-1:])
        return self.likelihood.conditional(psi).log_prob(flat)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            flat = self.likelihood.conditional(self.psi).sample(sample_shape)
        return flat.reshape(flat.shape[:-1] + self.event_shape)
