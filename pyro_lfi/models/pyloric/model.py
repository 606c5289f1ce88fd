"""The prior, the simulator and the Pyro model with an :class:`~pyro_lfi.Simulator` data site."""

from __future__ import annotations

import functools

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor
from torch.distributions.transforms import CatTransform, ExpTransform, identity_transform

from ...model.simulator import Simulator
from .fused import simulate
from .protocol import DEFAULT_PROTOCOL, NUM_CONDUCTANCES, PRIOR_HIGH, PRIOR_LOW, Protocol


class BoxTransformedDistribution(dist.TransformedDistribution):
    """A :class:`~pyro.distributions.TransformedDistribution` of a box ``Uniform(low, high)`` by an
    increasing transform, whose support is the image box ``[T(low), T(high)]`` rather than the
    transform's codomain, so that ``biject_to(support)`` maps the reals onto exactly it."""

    @property
    def support(self) -> constraints.Constraint:
        base = self.base_dist
        while isinstance(base, dist.Independent | torch.distributions.Independent):
            base = base.base_dist
        low, high = base.low, base.high
        for t in self.transforms:
            low, high = t(low), t(high)
        return constraints.independent(constraints.interval(low, high), 1)


def pyloric_prior(dtype: torch.dtype | None = None) -> dist.Distribution:
    """The prior of Gonçalves et al. (2020) over the 31 parameters (:data:`PRIOR_BOUNDS`), event
    shape ``(31,)``: each maximal conductance uniform, each synaptic strength log-uniform,
    :math:`\\log g_s \\sim U(\\log g_{low}, \\log g_{high})` (density :math:`\\propto 1 / g_s`)."""
    dtype = dtype or torch.get_default_dtype()
    low, high = torch.tensor(PRIOR_LOW, dtype=dtype), torch.tensor(PRIOR_HIGH, dtype=dtype)
    k = NUM_CONDUCTANCES
    base = dist.Uniform(torch.cat([low[:k], low[k:].log()]), torch.cat([high[:k], high[k:].log()])).to_event(1)
    to_synapses = CatTransform([identity_transform, ExpTransform()], dim=-1, lengths=[k, len(low) - k])
    return BoxTransformedDistribution(base, to_synapses)


def pyloric_simulator(params: Tensor, *, output: str = "features", subsample: int = 40,
                      protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                      chunk_size: int | None = None) -> Tensor:
    """:func:`simulate` in float32 with the noise from torch's global RNG, for an
    :class:`~pyro_lfi.Simulator` site: ``params [..., 31]`` to ``[..., 18]`` features
    (``output="features"``, NaN where undefined) or the 3 traces every ``subsample`` samples,
    concatenated (``"trace"``: ``[..., 3 ceil(num_samples / subsample)]``, AB/PD first)."""
    x = simulate(params, output=output, subsample=subsample, protocol=protocol, dtype=torch.float32,
                 chunk_size=chunk_size, backend=backend)
    return x if output == "features" else x.flatten(-2)


def pyloric_model(x: Tensor | None = None, *, output: str = "features", subsample: int = 40,
                  protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                  chunk_size: int | None = None) -> Tensor:
    """Pyro model: ``theta ~ pyloric_prior()`` (31 parameters, :data:`PARAMETER_NAMES`),
    ``x ~ Simulator(pyloric_simulator, theta)``.

    ``x`` is the 18 features (``output="features"``, :data:`FEATURE_NAMES`; a rhythm without
    bursts in some neuron gives NaN features, which a campaign records as an invalid row) or the
    membrane potentials every ``subsample`` steps (``"trace"``; every ms by default).

    >>> sims = pyro_lfi.simulate(pyloric_model, 10_000, seed=0)                  # doctest: +SKIP
    >>> guide = pyro_lfi.NeuralPosterior(pyloric_model, observed="x")             # doctest: +SKIP
    """
    theta = pyro.sample("theta", pyloric_prior())
    fn = functools.partial(pyloric_simulator, output=output, subsample=subsample, protocol=protocol,
                           backend=backend, chunk_size=chunk_size)
    width = protocol.output_width(output, subsample)
    return pyro.sample("x", Simulator(fn, theta, event_shape=(width,), param_event_dims=1), obs=x)
