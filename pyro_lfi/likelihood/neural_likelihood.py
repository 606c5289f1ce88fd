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

import torch
from torch import nn

from ..guide.estimators import EstimatorSpec, check_estimator_spec, density_needs_ode, make_estimator
from ..nn import ConditionalDensityEstimator, Standardize
from ..nn.mixed import MixedDensityEstimator, discrete_layout, has_integer_column
from .site_estimator import SiteDistribution, SiteEstimator

__all__ = ["LearnedLikelihood", "NeuralLikelihood"]


class LearnedLikelihood(SiteDistribution):
    """The Pyro distribution of a :class:`NeuralLikelihood` at given parameters, which can be
    sampled from as well as scored."""

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            flat = self.estimator.conditional(self.psi).sample(sample_shape)
        return flat.reshape(flat.shape[:-1] + self.event_shape)


class NeuralLikelihood(SiteEstimator):
    r""":math:`q_\phi(x \mid \psi)` of the Simulator site ``observed`` of ``model``.

    :param model: the Pyro model.
    :param observed: the name of the Simulator site.
    :param estimator: ``"nsf"``, ``"maf"``, ``"mdn"``, ``"mnle"`` (mixed discrete and
        continuous outputs: :class:`~pyro_lfi.nn.MixedDensityEstimator`), ``"auto"`` (the
        default: ``"mnle"`` where some output column holds only integers in the training
        set, such as spike counts or choices, else ``"nsf"``), or a callable as
        for :class:`~pyro_lfi.NeuralPosterior`.
    :param embedding_net: maps the standardized parameters ``[*batch, P]`` to features.
    :param estimator_kwargs: passed to the estimator. For ``"mnle"``: ``discrete``, the flat
        output columns that are integers (default: those whose training values all are), and
        ``margin`` (see :func:`~pyro_lfi.nn.mixed.discrete_layout`).
    """

    distribution = LearnedLikelihood

    def __init__(self, model: Callable, observed: str = "x", estimator: EstimatorSpec = "auto",
                 embedding_net: nn.Module | None = None, **estimator_kwargs):
        super().__init__(model, observed)
        if estimator not in ("auto", "mnle"):
            check_estimator_spec(estimator)
        if density_needs_ode(estimator):
            raise ValueError(
                f"estimator={estimator!r} solves an ODE for every density, and MCMC on the surrogate "
                "evaluates the likelihood at every step: use 'nsf', 'maf', 'mdn' or 'mnle' for a likelihood"
            )
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
        if self.estimator_spec == "auto":
            self.estimator_spec = "mnle" if has_integer_column(x) else "nsf"
        if self.estimator_spec == "mnle":
            kwargs = dict(self.estimator_kwargs)
            if "low" not in kwargs:  # a new estimator (a loaded one has its layout saved)
                margin = kwargs.pop("margin", 0.0)
                kwargs.update(discrete_layout(x, kwargs.pop("discrete", None), margin))
            self.estimator_kwargs = kwargs
            self.estimator = MixedDensityEstimator(x.shape[-1], context, **kwargs)
        else:
            self.estimator = make_estimator(self.estimator_spec, x.shape[-1], context, self.estimator_kwargs)
        self.estimator.fit_standardization(x.to(torch.get_default_dtype()))

    def conditional(self, psi: torch.Tensor) -> torch.distributions.Distribution:
        r""":math:`q(x_\text{flat} \mid \psi)` for flat parameters ``psi`` ``[*batch, P]``."""
        self.require_built()
        return self.estimator(self.embedding_net(self.param_standardize(psi)))

    def score(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conditional(psi).log_prob(x.to(psi.dtype))
