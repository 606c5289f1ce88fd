r"""What every estimator of a Simulator site's data given its own parameters :math:`\psi` shares:
the training rows (one per simulated trial), the flattening of :math:`\psi`, and being built
lazily from the first simulations."""

from __future__ import annotations

import os
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import nn

from ..errors import NotFittedError
from ..nn.validity import ValidityClassifier
from ..simulation.simulations import Simulations
from .inputs import flatten_params, simulator_inputs
from .persistence import load_site_estimator, saved_site_estimator
from .reach import covered_range

__all__ = ["SiteDistribution", "SiteEstimator", "flatten_params"]


class SiteDistribution(dist.TorchDistribution):
    """A :class:`SiteEstimator` at given parameters ``psi`` ``[*batch, P]``: the parameters'
    batch shape, one trial's event shape, and the estimator's :meth:`~SiteEstimator.score` as
    log density (broadcast over the value's batch dims, e.g. iid trials)."""

    arg_constraints: dict = {}
    support = dist.constraints.real

    def __init__(self, estimator: SiteEstimator, psi: torch.Tensor, batch_shape: torch.Size):
        self.estimator, self.psi = estimator, psi
        super().__init__(batch_shape, estimator.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> SiteDistribution:
        batch_shape = torch.Size(batch_shape)
        return type(self)(self.estimator, self.psi.expand(batch_shape + self.psi.shape[-1:]), batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        events = len(self.event_shape)
        batch = torch.broadcast_shapes(value.shape[: value.dim() - events], self.batch_shape)
        flat = value.expand(batch + self.event_shape).reshape(batch + (-1,))
        return self.estimator.log_density(self.psi.expand(batch + self.psi.shape[-1:]), flat)


class SiteEstimator(nn.Module):
    """Base of the learned likelihood and ratio of the Simulator site ``observed`` of ``model``;
    subclasses create their networks in :meth:`create` and score data in :meth:`score`."""

    #: options that files saved before the option existed were trained with
    saved_defaults: dict = {}

    #: what :meth:`forward` returns
    distribution: type[SiteDistribution] = SiteDistribution

    def __init__(self, model: Callable, observed: str = "x"):
        super().__init__()
        self.model, self.observed = model, observed
        self.event_shape: torch.Size | None = None
        self.param_shapes: tuple[torch.Size, ...] = ()
        #: :math:`P(\text{valid} \mid \psi)` where the training simulations failed somewhere
        self.validity: ValidityClassifier | None = None
        #: ``[2, P]``: each flat parameter's least and greatest training value, failed
        #: simulations' included where a validity classifier was fitted (see :mod:`.reach`)
        self.psi_range: torch.Tensor | None = None

    @property
    def is_built(self) -> bool:
        return self.event_shape is not None

    def require_built(self) -> None:
        if not self.is_built:
            raise NotFittedError(
                f"this {type(self).__name__} has not been trained: run pyro_lfi.NLE or pyro_lfi.NRE on it first"
            )

    def training_pairs(self, simulations: Simulations, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(psi, x)`` of the valid rows, one row per trial: flat parameters ``[m, P]`` and
        outputs ``[m, *event_shape]`` (``args``/``kwargs``: the model's arguments)."""
        valid = simulations[simulations.valid]
        if len(valid) == 0:
            raise ValueError(simulations.nothing_to_train_on())
        params, trials = simulator_inputs(self.model, self.observed, valid.latents, args, kwargs)
        self.param_shapes = tuple(p.shape[1:] for p in params)
        x = valid.values[self.observed]
        return flatten_params(params), x.reshape((-1,) + x.shape[1 + len(trials) :])

    def build(self, simulations: Simulations, *args, **kwargs) -> SiteEstimator:
        """Create the networks and fit the standardizations from the valid rows."""
        return self.create_for(*self.training_pairs(simulations, *args, **kwargs))

    def create_for(self, psi: torch.Tensor, x: torch.Tensor) -> SiteEstimator:
        """Create the networks for the rows of :meth:`training_pairs` and fit the standardizations."""
        self.event_shape = x.shape[1:]
        self.create(psi, x.reshape(len(x), -1))
        self.cover(psi)
        return self

    def cover(self, psi: torch.Tensor) -> None:
        """Widen :attr:`psi_range` to the training parameters ``psi`` ``[m, P]``."""
        self.psi_range = covered_range(psi.detach().cpu(), self.psi_range)

    def create(self, psi: torch.Tensor, x: torch.Tensor) -> None:
        """Create the networks from the training rows (flat ``psi`` and ``x``)."""
        raise NotImplementedError

    def score(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The site's log density of flat outputs ``x`` ``[*batch, D]`` given flat ``psi``."""
        raise NotImplementedError

    def log_density(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""The log density of a valid output ``x`` in the model, :meth:`score` plus
        :math:`\log P(\text{valid} \mid \psi)` where the simulator was seen to fail: fitted
        to valid outputs only, the estimator is of :math:`x` given that it is valid."""
        score = self.score(psi, x)
        return score if self.validity is None else score + self.validity.log_prob_valid(psi)

    def validity_pairs(self, simulations: Simulations, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(psi, valid)`` of every row (and trial) of ``simulations`` with finite parameters."""
        params, trials = simulator_inputs(self.model, self.observed, simulations.latents, args, kwargs)
        psi = flatten_params(params)
        valid = simulations.valid.repeat_interleave(trials.numel())
        finite = torch.isfinite(psi).all(-1)
        return psi[finite], valid[finite]

    def forward(self, *params: torch.Tensor) -> SiteDistribution:
        """The estimator at the Simulator's parameters, as the model passes them, as a Pyro
        distribution (a factory for :func:`~pyro_lfi.baselines.tractable`)."""
        psi, batch = self.flat_params(params)
        return self.distribution(self, psi, batch)

    def options(self) -> dict:
        """The constructor's options to save (not the model, nor modules given by the user)."""
        return {}

    def save(self, path: str | os.PathLike) -> None:
        """Save the trained estimator: options, shapes and weights (not the model, nor the code
        of a custom module, which :meth:`load` takes again)."""
        torch.save(saved_site_estimator(self), path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Callable, model_args: tuple = (), model_kwargs: dict | None = None,
             **modules) -> SiteEstimator:
        """Load an estimator written by :meth:`save` and attach ``model`` to it, after checking
        that the model's site passes its Simulator parameters of the saved shapes (the model
        runs once with ``model_args``/``model_kwargs``, without simulating). The file is
        unpickled: load only files you trust.

        :raises SiteError: if the model's site does not fit."""
        return load_site_estimator(cls, path, model, model_args, model_kwargs or {}, modules)

    def flat_params(self, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Size]:
        r"""The model's parameters of the site, as passed to the Simulator, as one
        ``[*batch, P]`` and their batch shape."""
        self.require_built()
        shapes = self.param_shapes
        if len(params) != len(shapes):
            raise ValueError(f"the simulator was trained with {len(shapes)} parameters, got {len(params)}")
        batch = torch.broadcast_shapes(*(p.shape[: p.dim() - len(s)] for p, s in zip(params, shapes)))
        return torch.cat([p.expand(batch + s).reshape(batch + (-1,)) for p, s in zip(params, shapes)], -1), batch
