r"""Reading a model: its latent and observed sites, their shapes and supports.

Every latent site :math:`\theta_i` with support :math:`S_i` is mapped to an unconstrained vector
by :math:`z_i = T_i^{-1}(\theta_i)` with :math:`T_i = \mathrm{biject\_to}(S_i)`; the flat vector
:math:`z = (z_1, \dots, z_k)` is what neural guides model. Densities move between the two spaces
by the change of variables

.. math:: \log q(\theta) = \log q(z) - \sum_i \log \lvert \det \partial T_i(z_i) / \partial z_i \rvert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to, constraints

from .simulator import Simulator

__all__ = ["LatentSite", "ModelSites", "ObservationError", "SiteError", "unwrap_distribution"]


class SiteError(ValueError):
    """A model's sites do not fit what pyro_lfi needs (unknown name, discrete latent, ...)."""


class ObservationError(ValueError):
    """An observation is missing or does not have the shape the simulator produces."""


def unwrap_distribution(fn):
    """The innermost distribution under Pyro's Independent/Expanded/Masked wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def plate_depth(site: dict) -> int:
    """How many rightmost batch dims the site's vectorized plates span."""
    return max((-f.dim for f in site["cond_indep_stack"] if f.vectorized), default=0)


def is_simulator_site(msg: dict) -> bool:
    return msg["type"] == "sample" and isinstance(unwrap_distribution(msg["fn"]), Simulator)


def simulator_of(msg: dict) -> Simulator:
    """The :class:`Simulator` of a simulator site (under any ``expand`` / ``to_event``)."""
    return unwrap_distribution(msg["fn"])


@dataclass(frozen=True)
class LatentSite:
    """One latent sample site: its name, per-simulation shape and support."""

    name: str
    shape: torch.Size
    support: constraints.Constraint
    event_dim: int

    @property
    def transform(self):
        """Bijection from the unconstrained space onto the site's support."""
        return biject_to(self.support)

    @property
    def unconstrained_shape(self) -> torch.Size:
        return torch.Size(self.transform.inv.forward_shape(self.shape))

    @property
    def size(self) -> int:
        return self.unconstrained_shape.numel()


@dataclass(frozen=True)
class ModelSites:
    """The latent sites of a model (in execution order) and its observed sites with shapes."""

    latents: tuple[LatentSite, ...]
    observed: dict[str, torch.Size]

    @property
    def num_unconstrained(self) -> int:
        """Dimension D of the flat unconstrained latent vector."""
        return sum(s.size for s in self.latents)

    @property
    def latent_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.latents)

    @classmethod
    def from_model(
        cls, model, observed: Sequence[str], data: dict[str, torch.Tensor], *args, **kwargs
    ) -> ModelSites:
        """Trace ``model`` once with the observed sites fixed to ``data`` (one simulation's
        values, so the simulator does not run) and read off the latent sites."""
        missing = [name for name in observed if name not in data]
        if missing:
            raise SiteError(f"no simulated values for observed site(s) {missing}")
        with poutine.block():
            trace = poutine.trace(poutine.condition(model, data=data)).get_trace(*args, **kwargs)
        trace = prune_subsample_sites(trace)
        sample_sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
        unknown = [name for name in observed if name not in sample_sites]
        if unknown:
            raise SiteError(
                f"observed site(s) {unknown} are not sample sites of the model; "
                f"its sample sites are {sorted(sample_sites)}"
            )
        latents = []
        for name, site in sample_sites.items():
            if name in observed or site["is_observed"] or is_simulator_site(site):
                continue
            if site["infer"].get("is_auxiliary"):
                continue
            support = site["fn"].support
            if support.is_discrete:
                raise SiteError(
                    f"latent site '{name}' has discrete support {support}: neural posterior "
                    "guides model continuous latents only (enumerate or condition it out)"
                )
            latents.append(
                LatentSite(name, site["value"].shape, support, site["fn"].event_dim)
            )
        if not latents:
            raise SiteError("the model has no latent sample sites to infer")
        shapes = {name: sample_sites[name]["value"].shape for name in observed}
        return cls(tuple(latents), shapes)

    # -- latent space ---------------------------------------------------------------------------

    def to_unconstrained(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Flatten constrained site values ``[*batch, *shape]`` into ``z`` of shape ``[*batch, D]``."""
        parts = []
        for site in self.latents:
            value = _require(values, site.name)
            batch = _batch_shape(value, site.shape, site.name)
            z = site.transform.inv(value)
            parts.append(z.reshape(batch + (site.size,)))
        return torch.cat(parts, dim=-1)

    def to_constrained(self, z: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Split ``z`` ``[*batch, D]`` into constrained site values and, per site,
        :math:`\\log\\lvert\\det \\partial\\theta_i/\\partial z_i\\rvert` of shape ``batch``."""
        batch = z.shape[:-1]
        values, log_dets = {}, {}
        for site, part in zip(self.latents, z.split([s.size for s in self.latents], dim=-1)):
            u = part.reshape(batch + site.unconstrained_shape)
            transform = site.transform
            value = transform(u)
            ladj = transform.log_abs_det_jacobian(u, value)
            log_dets[site.name] = sum_rightmost(ladj, ladj.dim() - len(batch))
            values[site.name] = value
        return values, log_dets

    def log_abs_det_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \log\lvert\det \partial\theta_i/\partial z_i\rvert`, shape ``z.shape[:-1]``."""
        return sum(self.to_constrained(z)[1].values())

    # -- observations ---------------------------------------------------------------------------

    def data_batch_shape(self, data: dict[str, torch.Tensor]) -> torch.Size:
        """Leading batch shape of observations, checked against the simulated shapes."""
        batch = None
        for name, shape in self.observed.items():
            b = _batch_shape(_require(data, name), shape, name, kind="observation")
            if batch is not None and b != batch:
                raise ObservationError(
                    f"observed sites have different batch shapes: {tuple(batch)} and {tuple(b)} ('{name}')"
                )
            batch = b
        return batch

    def flat_data(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observed values as one tensor: the site's own shape when there is one observed site,
        else every site flattened and concatenated along the last dim."""
        batch = self.data_batch_shape(data)
        if len(self.observed) == 1:
            return data[next(iter(self.observed))]
        return torch.cat([data[n].reshape(batch + (-1,)) for n in self.observed], dim=-1)


def _require(values: dict, name: str) -> torch.Tensor:
    if name not in values:
        raise SiteError(f"no value for site '{name}'; got sites {sorted(values)}")
    return torch.as_tensor(values[name], dtype=torch.get_default_dtype())


def _batch_shape(value: torch.Tensor, shape: torch.Size, name: str, kind: str = "value") -> torch.Size:
    k = len(shape)
    if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(shape):
        error = ObservationError if kind == "observation" else SiteError
        raise error(
            f"{kind} for site '{name}' has shape {tuple(value.shape)}, but the model's site has "
            f"shape {tuple(shape)} per simulation; pass a tensor of shape {tuple(shape)} "
            f"(or [batch, {', '.join(map(str, shape))}] for several)"
        )
    return value.shape[: value.dim() - k]


class _ObservationReader(pyro.poutine.messenger.Messenger):
    """Records the values of observed sites; refuses to simulate them."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.names = tuple(names)
        self.values: dict[str, torch.Tensor] = {}

    def _pyro_sample(self, msg):
        if msg["name"] not in self.names:
            return
        if not msg["is_observed"]:
            raise ObservationError(
                f"no observed value for site '{msg['name']}': pass the observation the way the "
                "model receives it (e.g. model(x=x_o) -> guide.sample(n, x=x_o)) or condition the "
                "model with pyro.condition(model, data={...})"
            )
        self.values[msg["name"]] = msg["value"]
        msg["done"] = True
        msg["stop"] = True


def read_observation(model, names: Sequence[str], *args, **kwargs) -> dict[str, torch.Tensor]:
    """Run ``model`` (blocked from outer handlers) and return the values of its observed sites."""
    reader = _ObservationReader(names)
    with poutine.block(), reader:
        model(*args, **kwargs)
    missing = [n for n in names if n not in reader.values]
    if missing:
        raise ObservationError(f"the model never reached observed site(s) {missing}")
    return reader.values
