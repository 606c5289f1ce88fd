r"""What a simulator site was given: its parameters, per simulated row and trial.

A learned likelihood :math:`q(x \mid \psi)` is of the ``Simulator`` site's own inputs
:math:`\psi` (``Simulator(fn, *params)``), not of the model's latents, so that it stays valid
under another prior, inside plates and in hierarchical models. Campaigns record the latents;
this module replays the model on them, vectorized and without simulating, to read :math:`\psi`.
Inside plates (iid trials), every trial is a row of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..errors import SiteError
from ..model.schema import SimulatorPlaceholders, is_simulator_site, read_schema, simulator_of
from ..seeding import preserved_rng
from ..simulation.trial import uncondition

__all__ = ["SimulatorParams", "flatten_params", "prior_inputs", "simulator_inputs"]

_PLATE = "_lfi_inputs"


class SimulatorParams(Messenger):
    """Keeps the parameters of the Simulator at site ``name``, broadcast to its batch shape
    (``params`` stays ``None`` if the run has no Simulator site of that name)."""

    def __init__(self, name: str):
        super().__init__()
        self.name, self.params, self.batch_shape = name, None, None

    def _pyro_sample(self, msg):
        if msg["name"] == self.name and is_simulator_site(msg):
            self.batch_shape = msg["fn"].batch_shape
            self.params = simulator_of(msg).broadcast_params(self.batch_shape)

    @property
    def event_shapes(self) -> list[tuple[int, ...]]:
        """Each parameter's own shape (its batch dims removed)."""
        return [tuple(p.shape[len(self.batch_shape) :]) for p in self.params]


def flatten_params(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Parameters ``[m, *shape_i]`` as one ``[m, P]``."""
    return torch.cat([p.reshape(len(p), -1) for p in params], -1)


def simulator_inputs(
    model, site: str, latents: Mapping[str, torch.Tensor], args: tuple = (), kwargs: Mapping | None = None
) -> tuple[tuple[torch.Tensor, ...], torch.Size]:
    """The parameters of Simulator site ``site`` for latent values ``latents`` (``[n, *shape]``
    each): one tensor ``[n * trials, *param_event_shape]`` per parameter, and the site's own
    batch shape (its plates, ``trials`` rows per simulation).

    :raises SiteError: if ``site`` is not a Simulator site of the model.
    """
    return _inputs(model, site, len(next(iter(latents.values()))), latents, args, kwargs)


def prior_inputs(
    model, site: str, n: int, args: tuple = (), kwargs: Mapping | None = None
) -> tuple[tuple[torch.Tensor, ...], torch.Size]:
    """As :func:`simulator_inputs`, at ``n`` draws of the latents from the model's prior (from
    the global RNG; nothing is simulated)."""
    return _inputs(model, site, n, None, args, kwargs)


def _inputs(model, site: str, n: int, latents: Mapping[str, torch.Tensor] | None, args: tuple, kwargs: Mapping | None):
    kwargs = dict(kwargs or {})
    placeholders = SimulatorPlaceholders(0.0)(uncondition(model, None))
    with preserved_rng():
        schema = read_schema(placeholders, args, kwargs)
    if site not in schema.sites:
        raise SiteError(f"'{site}' is not a site of the model; its sites are {list(schema.sites)}")
    inputs = SimulatorParams(site)
    with torch.no_grad(), poutine.block():
        with preserved_rng() if latents is not None else contextlib.nullcontext():
            inputs(schema.vectorize(placeholders, n, _PLATE, dict(latents or {})))(*args, **kwargs)
    if inputs.params is None:
        raise SiteError(f"site '{site}' is not sampled from a pyro_lfi.Simulator")
    depth = schema.sites[site].plate_depth
    trials = schema.sites[site].shape[:depth]
    rows = n * trials.numel()
    batch_dims = schema.max_plate_nesting + 1
    return tuple(p.reshape((rows,) + p.shape[batch_dims:]) for p in inputs.params), trials
