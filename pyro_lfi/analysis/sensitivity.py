r"""Active subspaces of the posterior (Constantine 2015; as in Deistler, Macke & Gonçalves 2022).

In the standardized unconstrained space :math:`s = (z - m) / \sigma` (:math:`m, \sigma`: the
posterior mean and standard deviation of :math:`z = T^{-1}(\theta)`, from draws), for a scalar
:math:`f(s)`,

.. math:: C = \mathbb{E}_{q(s \mid x_o)}\big[\nabla_s f \, \nabla_s f^\top\big] = W \Lambda W^\top,

estimated by Monte Carlo over posterior draws. With :math:`f = \log q(s \mid x_o)` (the default),
the top eigenvector is the direction along which the posterior is narrowest: for a Gaussian,
:math:`C` is the precision of :math:`s`. With a user's property :math:`f(\theta)` of the
parameters, it is the direction in which the property changes most.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import xarray as xr
from torch.func import jvp

from ..model.sites import ModelSites
from .density import GuideLike, PosteriorDensity, flat_values, parameter_names, site_values, unconstrained_names

__all__ = ["ActiveSubspace", "active_subspace"]


@dataclass
class ActiveSubspace:
    r"""Eigen-decomposition of :math:`C = \mathbb{E}[\nabla f \nabla f^\top]` in the standardized
    unconstrained space.

    :ivar eigenvalues: ``[D]``, descending.
    :ivar eigenvectors: ``[D, D]``, one unit eigenvector per column, in the order of the eigenvalues.
    :ivar names: the coordinates of :math:`z` (the parameters' names for elementwise supports).
    :ivar loc: posterior mean :math:`m` of :math:`z`; ``scale``: its standard deviation :math:`\sigma`.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    names: tuple[str, ...]
    loc: torch.Tensor
    scale: torch.Tensor
    sites: ModelSites = field(repr=False)

    def to_dataset(self) -> xr.Dataset:
        """Eigenvalues over ``component`` and eigenvectors over ``("parameter", "component")``."""
        component = list(range(len(self.eigenvalues)))
        return xr.Dataset(
            {
                "eigenvalues": ("component", self.eigenvalues.numpy()),
                "eigenvectors": (("parameter", "component"), self.eigenvectors.numpy()),
            },
            coords={"parameter": list(self.names), "component": component},
        )

    def _z(self, theta: Mapping[str, Any] | Any | None) -> torch.Tensor:
        if theta is None:
            return self.loc
        if isinstance(theta, Mapping):
            return self.sites.to_unconstrained(theta)
        flat, names = torch.as_tensor(theta, dtype=self.loc.dtype), parameter_names(self.sites)
        if flat.dim() == 0 or flat.shape[-1] != len(names):
            raise ValueError(f"theta: site values or a flat tensor of the parameters {list(names)}")
        return self.sites.to_unconstrained(site_values(self.sites, flat))

    def direction(self, component: int = 0, theta: Mapping[str, Any] | Any | None = None) -> xr.DataArray:
        r"""Eigenvector ``component`` mapped to the constrained parameters at ``theta`` (site
        values or a flat tensor; by default :math:`T(m)`): the unit vector along
        :math:`\partial\theta/\partial s \, w`, over dim ``"parameter"``."""
        z = self._z(theta).reshape(-1)
        tangent = self.scale * self.eigenvectors[:, component]

        def flat(u: torch.Tensor) -> torch.Tensor:
            return flat_values(self.sites, self.sites.to_constrained(u)[0])

        _, d = jvp(flat, (z,), (tangent,))
        d = d / d.norm()
        names = list(parameter_names(self.sites))
        return xr.DataArray(d.detach().numpy(), dims="parameter", coords={"parameter": names})

    def narrowest_direction(self, theta: Mapping[str, Any] | Any | None = None) -> xr.DataArray:
        """The top eigenvector in the constrained parameters (:meth:`direction` 0): with the
        default :math:`f = \\log q`, the direction along which the posterior is narrowest."""
        return self.direction(0, theta)

    def perturb(
        self, theta: Mapping[str, Any] | Any, scale: float | torch.Tensor, component: int = 0
    ) -> dict[str, torch.Tensor]:
        r"""Move ``theta`` (site values or flat, one or a batch) by ``scale`` along eigenvector
        ``component`` in the standardized space, :math:`s \mapsto s + \text{scale}\, w`; returns
        site values, always inside the support. A tensor ``scale`` of shape ``[k]`` gives ``k`` moves."""
        z = self._z(theta)
        scale = torch.as_tensor(scale, dtype=z.dtype)
        step = scale[..., None] * self.eigenvectors[:, component] * self.scale
        return self.sites.to_constrained(z + step.reshape(step.shape[:-1] + (1,) * (z.dim() - 1) + step.shape[-1:]))[0]


def gradients(
    density: PosteriorDensity, s: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, function: Callable | None
) -> torch.Tensor:
    r""":math:`\nabla_s f` at the standardized draws ``s`` ``[N, D]``."""
    s = s.detach().requires_grad_(True)
    z = loc + scale * s
    if function is None:
        f = density.log_prob_z(z)
    else:
        f = torch.as_tensor(function(density.sites.to_constrained(z)[0]))
        if f.shape != (len(s),):
            raise ValueError(
                f"function must map site values [n, *shape] to one value per draw [{len(s)}], "
                f"got shape {tuple(f.shape)}"
            )
    (grad,) = torch.autograd.grad(f.sum(), s)
    return grad


def active_subspace(
    guide: GuideLike,
    *args: Any,
    num_samples: int = 1000,
    function: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    **kwargs: Any,
) -> ActiveSubspace:
    r"""The active subspace of ``guide``'s posterior at the observation of ``args``/``kwargs``
    (``x=x_o``): eigenvalues and eigenvectors of :math:`C = \mathbb{E}[\nabla_s f \nabla_s f^\top]`
    over ``num_samples`` posterior draws, in :math:`z` standardized by the posterior's standard
    deviation of :math:`z` (the unconstrained space; for real-valued sites, the parameters).

    :param function: :math:`f`: a function of site values ``[n, *shape]`` returning ``[n]``
        (differentiable with torch); by default :math:`\log q(z \mid x_o)`.
    """
    density = PosteriorDensity.of(guide, args, kwargs)
    loc, scale, z = density.standardization(num_samples)
    grads = torch.cat([gradients(density, s, loc, scale, function) for s in ((z - loc) / scale).split(1024)])
    if not torch.isfinite(grads).all():
        raise ValueError("non-finite gradients at some posterior draws")
    values, vectors = torch.linalg.eigh(grads.T @ grads / len(grads))
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    names = unconstrained_names(density.sites)
    return ActiveSubspace(values.detach(), (vectors * signs).detach(), names, loc, scale, density.sites)
