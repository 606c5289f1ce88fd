"""The simulator and the Pyro model with an :class:`~pyro_lfi.Simulator` data site."""

from __future__ import annotations

import functools

import pyro
import torch
from torch import Tensor

from ...model.simulator import Simulator
from .fused import simulate
from .protocol import DEFAULT_PROTOCOL, Protocol, hodgkin_huxley_prior


def hodgkin_huxley_simulator(params: Tensor, *, output: str = "summary", subsample: int = 20,
                             protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                             chunk_size: int | None = None) -> Tensor:
    """:func:`simulate` in float32 with the noise from torch's global RNG, for an
    :class:`~pyro_lfi.Simulator` site: ``params [..., 8]`` to ``[..., 7]`` summary statistics
    (``output="summary"``) or ``[..., ceil(num_samples / subsample)]`` traces (``"trace"``)."""
    return simulate(params, output=output, subsample=subsample, protocol=protocol, dtype=torch.float32,
                    chunk_size=chunk_size, backend=backend)


def hodgkin_huxley_model(x: Tensor | None = None, *, output: str = "summary", subsample: int = 20,
                         protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                         chunk_size: int | None = None) -> Tensor:
    """Pyro model: ``theta ~ Uniform(PRIOR_LOW, PRIOR_HIGH)`` (8 parameters, :data:`PARAMETER_NAMES`),
    ``x ~ Simulator(hodgkin_huxley_simulator, theta)``.

    ``x`` is the 7 summary statistics (``output="summary"``, :data:`SUMMARY_NAMES`) or the
    membrane potential every ``subsample`` steps (``output="trace"``; 601 samples, every 0.2 ms,
    by default), e.g. for a learned embedding net.

    >>> sims = pyro_lfi.simulate(hodgkin_huxley_model, 10_000, seed=0)           # doctest: +SKIP
    >>> guide = pyro_lfi.NeuralPosterior(hodgkin_huxley_model, observed="x")      # doctest: +SKIP
    """
    theta = pyro.sample("theta", hodgkin_huxley_prior())
    fn = functools.partial(hodgkin_huxley_simulator, output=output, subsample=subsample, protocol=protocol,
                           backend=backend, chunk_size=chunk_size)
    width = protocol.output_width(output, subsample)
    return pyro.sample("x", Simulator(fn, theta, event_shape=(width,), param_event_dims=1), obs=x)
