r"""A guide's posterior at one observation, in the two spaces the analyses work in.

A guide models the flat unconstrained vector :math:`z \in \mathbb{R}^D` (see
:mod:`pyro_lfi.model.sites`); the parameters :math:`\theta = T(z)` live in their supports, and

.. math:: \log q(\theta \mid x_o) = \log q(z \mid x_o) - \log\lvert\det \partial T(z) / \partial z\rvert.

The analyses name the constrained parameters by their flat elements (``theta[0]``, ``scale``,
...; :func:`parameter_names`), evaluate densities through :math:`z` (so that every grid point maps
into the support, with autograd) and optimize in :math:`z` standardized by the posterior's spread,
:math:`s = (z - m) / \sigma`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch.distributions import Distribution

from ..diagnostics.sbc import element_labels
from ..errors import LFIError
from ..model.sites import ModelSites

__all__ = [
    "GuideLike",
    "ParameterError",
    "PosteriorDensity",
    "flat_values",
    "parameter_names",
    "site_values",
    "unconstrained_names",
]

#: What an analysis needs of a guide (:class:`~pyro_lfi.NeuralPosterior` has both).
REQUIRED = ("posterior_z", "require_built")


@runtime_checkable
class GuideLike(Protocol):
    """Anything with the guide's :math:`q(z \\mid x)` and its model's sites."""

    def posterior_z(self, *args: Any, **kwargs: Any) -> Distribution: ...

    def require_built(self) -> ModelSites: ...


class ParameterError(LFIError, IndexError, ValueError):
    """A parameter index or name the posterior does not have, or one that cannot be varied."""


def parameter_names(sites: ModelSites) -> tuple[str, ...]:
    """Names of the flat constrained parameters: ``theta[0]``, ``theta[1]``, ``scale``, ..."""
    return tuple(label for s in sites.latents for label in element_labels(s.name, tuple(s.shape)))


def unconstrained_names(sites: ModelSites) -> tuple[str, ...]:
    """Names of the coordinates of :math:`z`: the parameter's name where a site's bijection keeps
    its number of elements (elementwise supports), ``name[z0]``, ``name[z1]``, ... where not."""
    names = []
    for s in sites.latents:
        same = s.shape.numel() == s.size
        names += element_labels(s.name, tuple(s.shape)) if same else [f"{s.name}[z{k}]" for k in range(s.size)]
    return tuple(names)


def flat_values(sites: ModelSites, values: Mapping[str, Any]) -> torch.Tensor:
    """Site values ``[*batch, *shape]`` (as :meth:`NeuralPosterior.sample` returns them) as one
    flat constrained tensor ``[*batch, P]``."""
    parts, batch = [], None
    for s in sites.latents:
        if s.name not in values:
            raise ParameterError(f"no value for latent site '{s.name}'; got {sorted(values)}")
        value = torch.as_tensor(values[s.name], dtype=torch.get_default_dtype())
        k = len(s.shape)
        if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(s.shape):
            raise ParameterError(
                f"value of site '{s.name}' has shape {tuple(value.shape)}; the site has shape {tuple(s.shape)}"
            )
        b = value.shape[: value.dim() - k]
        if batch is not None and b != batch:
            raise ParameterError(f"site values have different batch shapes: {tuple(batch)} and {tuple(b)}")
        batch = b
        parts.append(value.reshape(b + (s.shape.numel(),)))
    return torch.cat(parts, -1)


def site_values(sites: ModelSites, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inverse of :func:`flat_values`: ``[*batch, P]`` to site values ``[*batch, *shape]``."""
    parts = flat.split([s.shape.numel() for s in sites.latents], -1)
    return {s.name: p.reshape(flat.shape[:-1] + s.shape) for s, p in zip(sites.latents, parts)}


def require_guide(guide: object) -> ModelSites:
    """The guide's model sites; a TypeError naming what ``guide`` lacks if it is not a guide."""
    missing = [name for name in REQUIRED if not callable(getattr(guide, name, None))]
    if missing:
        raise TypeError(
            f"{type(guide).__name__} is not a guide: posterior analysis needs an object with "
            f"posterior_z(*args, **kwargs) and require_built() (a pyro_lfi.NeuralPosterior); it lacks {missing}"
        )
    return guide.require_built()


@dataclass(frozen=True)
class PosteriorDensity:
    r""":math:`q(z \mid x_o)` of a guide at one observation, with its sites' bijections."""

    sites: ModelSites
    q: Distribution

    @classmethod
    def of(cls, guide: GuideLike, args: tuple, kwargs: dict) -> PosteriorDensity:
        """The posterior of ``guide`` at the observation the model receives with ``args, kwargs``.

        :raises TypeError: if ``guide`` is not a guide; ``ValueError`` for a batch of observations.
        """
        sites = require_guide(guide)
        with torch.no_grad():  # the observation's embedding is a constant of every analysis
            q = guide.posterior_z(*args, **kwargs)
        if not isinstance(q, Distribution):
            raise TypeError(f"{type(guide).__name__}.posterior_z returned {type(q).__name__}, not a Distribution")
        if tuple(q.event_shape) != (sites.num_unconstrained,):
            raise TypeError(f"posterior_z has event shape {tuple(q.event_shape)}, the sites {sites.num_unconstrained}")
        if q.batch_shape.numel() != 1:
            raise ValueError(f"posterior analysis takes one observation, got a batch {tuple(q.batch_shape)}")
        return cls(sites, q)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return parameter_names(self.sites)

    @property
    def dim(self) -> int:
        """:math:`D`, the dimension of :math:`z`."""
        return self.sites.num_unconstrained

    @functools.cached_property
    def free(self) -> tuple[bool, ...]:
        """Per flat parameter: whether it can be varied alone (its site's bijection keeps the
        number of elements, unlike a simplex or a covariance matrix)."""
        return tuple(s.shape.numel() == s.size for s in self.sites.latents for _ in range(s.shape.numel()))

    def log_prob_z(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(z \mid x_o)`, batched over ``z``'s leading dims."""
        return self.q.log_prob(z).reshape(z.shape[:-1])

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(\theta \mid x_o)` at :math:`\theta = T(z)`: the Jacobian included."""
        return self.log_prob_z(z) - self.sites.log_abs_det_jacobian(z)

    def to_z(self, flat: torch.Tensor) -> torch.Tensor:
        """Flat constrained parameters ``[*batch, P]`` to :math:`z` ``[*batch, D]``."""
        return self.sites.to_unconstrained(site_values(self.sites, flat))

    def to_flat(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`z` ``[*batch, D]`` to the flat constrained parameters ``[*batch, P]``."""
        return flat_values(self.sites, self.sites.to_constrained(z)[0])

    @torch.no_grad()
    def sample_z(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` draws of :math:`z` ``[num_samples, D]``."""
        return self.q.sample((num_samples,)).reshape(num_samples, self.dim)

    def parameters(self, value: Mapping[str, Any] | Any) -> torch.Tensor:
        """Site values (a dict) or a flat tensor ``[*batch, P]`` of constrained parameters, checked
        to lie in the support, as a flat tensor."""
        if isinstance(value, Mapping):
            flat = flat_values(self.sites, value)
        else:
            flat = torch.as_tensor(value, dtype=torch.get_default_dtype())
            if flat.dim() == 0 or flat.shape[-1] != len(self.names):
                raise ParameterError(
                    f"expected site values or a flat tensor of {len(self.names)} parameters {list(self.names)}, "
                    f"got shape {tuple(flat.shape)}"
                )
        if not self.in_support(flat).all():
            raise ValueError("parameter values outside the support of the model's latent sites")
        return flat

    def one(self, value: Mapping[str, Any] | Any, what: str = "condition") -> torch.Tensor:
        """One parameter set (site values or a flat tensor) as a flat ``[1, P]`` tensor."""
        flat = self.parameters(value)
        if flat.shape[:-1].numel() != 1:
            raise ValueError(f"{what} must be one parameter set, got a batch {tuple(flat.shape[:-1])}")
        return flat.reshape(1, -1)

    def in_support(self, flat: torch.Tensor) -> torch.Tensor:
        """Whether each flat parameter set ``[*batch, P]`` lies in every site's support, ``[*batch]``
        (checked on the values: torch's inverse bijections clamp what lies outside)."""
        inside = torch.isfinite(flat).all(-1)
        for s, value in zip(self.sites.latents, site_values(self.sites, flat).values()):
            inside &= s.support.check(value).reshape(flat.shape[:-1] + (-1,)).all(-1)
        return inside

    def index(self, dim: int | str, *, free: bool = True) -> int:
        """The flat index of a parameter given by index or name; :class:`ParameterError` if there
        is none, or (``free``) if it cannot be varied alone."""
        if isinstance(dim, str):
            if dim not in self.names:
                raise ParameterError(f"no parameter named {dim!r}; the parameters are {list(self.names)}")
            i = self.names.index(dim)
        else:
            try:
                i = operator.index(dim)
            except TypeError:
                i = None
            if i is None or isinstance(dim, bool) or not -len(self.names) <= i < len(self.names):
                raise ParameterError(
                    f"parameter index {dim!r} out of range for {len(self.names)} parameters {list(self.names)}"
                )
            i %= len(self.names)
        if free and not self.free[i]:
            raise ParameterError(
                f"parameter {self.names[i]!r} belongs to a site whose elements are constrained jointly "
                "(e.g. a simplex or a covariance matrix): it cannot be varied with the others fixed"
            )
        return i

    @torch.no_grad()
    def standardization(self, num_samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of :math:`z` from ``num_samples`` draws, and the draws."""
        z = self.sample_z(num_samples)
        return z.mean(0), z.std(0).clamp_min(1e-12), z
