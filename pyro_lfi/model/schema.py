r"""One reading of a model: the role, shape, plates and distribution of every sample site.

Every part of pyro_lfi that needs to know a model's sites reads them here, from one traced run
(:func:`read_schema`), with Pyro's public effect handlers, by one rule:

- a site sampled by :class:`~pyro_lfi.Simulator`, observed (``obs=``, :func:`pyro.condition`) or
  un-conditioned by :func:`pyro.poutine.uncondition` is a **data** site;
- a ``pyro.deterministic`` site is **deterministic** (recorded, never inferred);
- an auxiliary site is skipped; every other sample site is a **latent** site.

The same schema vectorizes the model: :meth:`ModelSchema.vectorize` runs it under one more
:class:`pyro.plate` of ``size`` rows left of its own plates, where a site's value has shape
:meth:`ModelSchema.rows_shape`: ``(size, 1, ..., 1, *shape)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import constraints

from .simulator import Simulator

__all__ = ["ModelSchema", "Role", "SimulatorPlaceholders", "SiteSchema", "is_simulator_site", "read_schema",
           "simulator_of", "unwrap_distribution"]


class Role(str, Enum):
    LATENT = "latent"
    DATA = "data"
    DETERMINISTIC = "deterministic"


def unwrap_distribution(fn):
    """The innermost distribution under Pyro's Independent/Expanded/Masked wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def is_simulator_site(msg: dict) -> bool:
    return msg["type"] == "sample" and isinstance(unwrap_distribution(msg["fn"]), Simulator)


def simulator_of(msg: dict) -> Simulator:
    """The :class:`Simulator` of a simulator site (under any ``expand`` / ``to_event``)."""
    return unwrap_distribution(msg["fn"])


class SimulatorPlaceholders(Messenger):
    """Gives unobserved simulator sites ``fill`` of their shape instead of running the simulator
    (only those with a declared ``event_shape``, if ``declared_only``)."""

    def __init__(self, fill: float, declared_only: bool = False):
        super().__init__()
        self.fill, self.declared_only = fill, declared_only

    def _pyro_sample(self, msg):
        if msg["value"] is not None or not is_simulator_site(msg):
            return
        if not self.declared_only or simulator_of(msg).declared_event_shape is not None:
            msg["value"] = torch.full(msg["fn"].shape(), self.fill)


@dataclass(frozen=True)
class SiteSchema:
    """One sample site: its role, shape in one run, how many rightmost batch dims its vectorized
    plates span, whether its value was given (observed) rather than drawn, and its support."""

    name: str
    role: Role
    shape: torch.Size
    plate_depth: int
    observed: bool
    support: constraints.Constraint | None
    event_dim: int

    @classmethod
    def of(cls, name: str, site: dict) -> SiteSchema | None:
        """The schema of a traced sample site (``None`` for an auxiliary one)."""
        infer = site["infer"]
        if infer.get("is_auxiliary"):
            return None
        if infer.get("_deterministic"):
            role = Role.DETERMINISTIC
        elif site["is_observed"] or infer.get("was_observed") or is_simulator_site(site):
            role = Role.DATA
        else:
            role = Role.LATENT
        depth = max((-f.dim for f in site["cond_indep_stack"] if f.vectorized), default=0)
        support = None if is_simulator_site(site) else site["fn"].support
        observed = site["is_observed"] and role is not Role.DETERMINISTIC
        return cls(name, role, site["value"].shape, depth, observed, support, site["fn"].event_dim)


@dataclass(frozen=True)
class ModelSchema:
    """The sample sites of one run of a model, in execution order."""

    sites: Mapping[str, SiteSchema]

    @classmethod
    def of(cls, trace) -> ModelSchema:
        trace = prune_subsample_sites(trace)
        schemas = (SiteSchema.of(name, site) for name, site in trace.nodes.items() if site["type"] == "sample")
        return cls({s.name: s for s in schemas if s is not None})

    def names(self, role: Role) -> tuple[str, ...]:
        return tuple(n for n, s in self.sites.items() if s.role is role)

    @property
    def latents(self) -> tuple[str, ...]:
        return self.names(Role.LATENT)

    @property
    def data(self) -> tuple[str, ...]:
        """Data sites, observed or not."""
        return self.names(Role.DATA)

    @property
    def simulated(self) -> tuple[str, ...]:
        """Data sites whose values the run drew (a campaign records these)."""
        return tuple(n for n in self.data if not self.sites[n].observed)

    @property
    def deterministic(self) -> tuple[str, ...]:
        return self.names(Role.DETERMINISTIC)

    @functools.cached_property
    def shapes(self) -> dict[str, torch.Size]:
        return {n: s.shape for n, s in self.sites.items()}

    @property
    def max_plate_nesting(self) -> int:
        return max((s.plate_depth for s in self.sites.values()), default=0)

    def rows_shape(self, name: str, size: int) -> tuple[int, ...]:
        """Shape of site ``name`` under :meth:`vectorize`: rows, broadcast dims, own shape."""
        site = self.sites[name]
        return (size,) + (1,) * (self.max_plate_nesting - site.plate_depth) + tuple(site.shape)

    def vectorize(self, model, size: int, name: str, values: Mapping[str, torch.Tensor] | None = None):
        """``model`` under a plate ``name`` of ``size`` rows left of its own plates, with the
        sites in ``values`` (``[size, *shape]`` each) fixed to them."""
        plated = pyro.plate(name, size, dim=-self.max_plate_nesting - 1)(model)
        if not values:
            return plated
        return poutine.condition(plated, data={n: v.reshape(self.rows_shape(n, size)) for n, v in values.items()})


def read_schema(model, args: tuple = (), kwargs: Mapping | None = None, data: Mapping | None = None) -> ModelSchema:
    """The schema of one run of ``model(*args, **kwargs)`` with the sites in ``data`` fixed to
    those values, hidden from outer handlers (it draws from the global RNG: wrap it in
    :func:`~pyro_lfi.seeding.preserved_rng` to leave the caller's streams alone)."""
    conditioned = model if not data else poutine.condition(model, data=dict(data))
    with poutine.block(), torch.no_grad():
        return ModelSchema.of(poutine.trace(conditioned).get_trace(*args, **(kwargs or {})))
