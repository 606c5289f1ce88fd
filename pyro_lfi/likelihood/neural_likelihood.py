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

from ..errors import NotFittedError
from ..guide.estimators import EstimatorSpec, check_estimator_spec, make_estimator
from ..nn import ConditionalDensityEstimator, Standardize
from ..simulation.simulations import Simulations
from .inputs import simulator_inputs

__all__ = ["LearnedLikelihood", "NeuralLikelihood"]


class NeuralLikelihood(nn.Module):
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
        super().__init__()
        check_estimator_spec(estimator)
        self.model, self.observed = model, observed
        self.estimator_spec, self.estimator_kwargs = estimator, estimator_kwargs
        self.embedding_net = embedding_net if embedding_net is not None else nn.Identity()
        self.param_standardize: Standardize | None = None
        self.estimator: ConditionalDensityEstimator | None = None
        self.event_shape: torch.Size | None = None
        self.param_shapes: tuple[torch.Size, ...] = ()

    @property
    def is_built(self) -> bool:
        return self.estimator is not None

    def training_pairs(self, simulations: Simulations, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(psi, x)`` of the valid rows, one row per trial: flat parameters ``[m, P]`` and
        outputs ``[m, *event_shape]`` (``args``/``kwargs``: the model's arguments)."""
        params, x = self._rows(simulations, args, kwargs)
        return _flat(params), x

    def _rows(self, simulations: Simulations, args: tuple, kwargs: dict):
        valid = simulations[simulations.valid]
        if len(valid) == 0:
            raise ValueError(simulations.nothing_to_train_on())
        params, trials = simulator_inputs(self.model, self.observed, valid.latents, args, kwargs)
        x = valid.values[self.observed]
        return params, x.reshape((-1,) + x.shape[1 + len(trials) :])

    def build(self, simulations: Simulations, *args, **kwargs) -> NeuralLikelihood:
        """Create the networks and fit the standardizations from the valid rows."""
        params, x = self._rows(simulations, args, kwargs)
        psi = _flat(params)
        self.param_shapes = tuple(p.shape[1:] for p in params)
        self.event_shape = x.shape[1:]
        self.param_standardize = Standardize((psi.shape[-1],))
        self.param_standardize.fit(psi)
        with torch.no_grad():
            context = self.embedding_net(torch.zeros(2, psi.shape[-1])).shape[-1]
        features = self.event_shape.numel()
        self.estimator = make_estimator(self.estimator_spec, features, context, self.estimator_kwargs)
        self.estimator.fit_standardization(x.reshape(len(x), -1))
        return self

    def conditional(self, psi: torch.Tensor) -> torch.distributions.Distribution:
        r""":math:`q(x_\text{flat} \mid \psi)` for flat parameters ``psi`` ``[*batch, P]``."""
        if self.estimator is None:
            raise NotFittedError("this NeuralLikelihood has not been trained: run pyro_lfi.NLE(...).train(sims)")
        return self.estimator(self.embedding_net(self.param_standardize(psi)))

    def forward(self, *params: torch.Tensor) -> LearnedLikelihood:
        """The learned distribution of the site given the Simulator's parameters, as the model
        passes them (a factory for :func:`~pyro_lfi.baselines.tractable`)."""
        if self.estimator is None:
            raise NotFittedError("this NeuralLikelihood has not been trained: run pyro_lfi.NLE(...).train(sims)")
        return LearnedLikelihood(self, params)


def _flat(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Parameters ``[m, *shape_i]`` as one ``[m, P]``."""
    return torch.cat([p.reshape(len(p), -1) for p in params], -1)


class LearnedLikelihood(dist.TorchDistribution):
    """The Pyro distribution of a :class:`NeuralLikelihood` at given parameters: batch shape of
    the parameters (their event dims as in training removed), event shape of one trial."""

    arg_constraints: dict = {}
    support = dist.constraints.real

    def __init__(self, likelihood: NeuralLikelihood, params: tuple[torch.Tensor, ...]):
        shapes = likelihood.param_shapes
        if len(params) != len(shapes):
            raise ValueError(f"the simulator was trained with {len(shapes)} parameters, got {len(params)}")
        batch = torch.broadcast_shapes(*(p.shape[: p.dim() - len(s)] for p, s in zip(params, shapes)))
        self.likelihood = likelihood
        self.psi = torch.cat([p.expand(batch + s).reshape(batch + (-1,)) for p, s in zip(params, shapes)], -1)
        super().__init__(batch, likelihood.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> LearnedLikelihood:
        new = LearnedLikelihood.__new__(LearnedLikelihood)
        new.likelihood = self.likelihood
        new.psi = self.psi.expand(torch.Size(batch_shape) + self.psi.shape[-1:])
        super(LearnedLikelihood, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        return new

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
