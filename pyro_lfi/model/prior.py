r"""The model's prior over its latent sites, in the flat unconstrained space :math:`z`.

Sequential methods compare the guide with the prior and draw proposals from it; both happen in
the space the guide models. With :math:`\theta = T(z)` (see :mod:`pyro_lfi.model.sites`),

.. math:: \log p(z) = \log p(\theta) + \log\lvert\det \partial T(z)/\partial z\rvert,

where :math:`\log p(\theta)` is the sum of the latent sites' log densities in a run of the model
with those values, so hierarchical priors are handled. The model runs with its observed sites
fixed to the observation, so no simulation happens.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost

from ..errors import UnsupportedPriorError
from .schema import read_schema
from .sites import ModelSites, read_observation

__all__ = ["Prior", "UnsupportedPriorError"]

_PLATE = "_lfi_prior"


class Prior:
    r"""The prior :math:`p(z)` of ``model(*args, **kwargs)`` over the flat unconstrained latents.

    :param model: the Pyro model.
    :param sites: its sites, as read by the guide.
    :param args: the model's arguments (they carry the observation, as for the guide).
    """

    def __init__(self, model, sites: ModelSites, *args, **kwargs):
        self.sites = sites
        observation = read_observation(model, tuple(sites.observed), *args, **kwargs)
        self._model = poutine.condition(model, data=observation)
        self._args, self._kwargs = args, kwargs
        self._schema = sites.schema or read_schema(self._model, args, kwargs)  # guides saved before 0.2

    def _vectorized_trace(self, values: dict[str, torch.Tensor] | None, size: int):
        model = self._schema.vectorize(self._model, size, _PLATE, values)
        with poutine.block():
            return poutine.trace(model).get_trace(*self._args, **self._kwargs)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)` for ``z`` of shape ``[n, D]``; returns ``[n]``."""
        values, log_dets = self.sites.to_constrained(z)
        trace = self._vectorized_trace(values, len(z))
        total = sum(log_dets.values())
        for site in self.sites.latents:
            node = trace.nodes[site.name]
            log_p = node["fn"].log_prob(node["value"])
            total = total + sum_rightmost(log_p, log_p.dim() - 1).reshape(len(z))
        return total

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` draws of ``z`` from the prior, ``[num_samples, D]`` (torch's global RNG)."""
        trace = self._vectorized_trace(None, num_samples)
        values = {
            s.name: trace.nodes[s.name]["value"].reshape((num_samples,) + tuple(s.shape)) for s in self.sites.latents
        }
        return self.sites.to_unconstrained(values)

    @torch.no_grad()
    def mode(self) -> torch.Tensor:
        r"""The maximizer :math:`z^*` of :math:`p(z)`, ``[D]``, where every latent site has an
        independent Normal, LogNormal, MultivariateNormal or Uniform prior (where :math:`p(z)`
        is a Gaussian or a product of logistic densities).

        :raises UnsupportedPriorError: naming the site whose prior has another form, or whose
            parameters depend on other latent sites.
        """
        modes, densities = [], []
        for _ in range(2):  # a site whose distribution changes with the other latents: hierarchical
            trace = self._vectorized_trace(None, 1)
            nodes = [trace.nodes[s.name] for s in self.sites.latents]
            modes.append([_site_mode(s, node) for s, node in zip(self.sites.latents, nodes)])
            densities.append(torch.stack([
                node["fn"].log_prob(s.transform(mode.reshape(node["value"].shape))).sum()
                for s, node, mode in zip(self.sites.latents, nodes, modes[-1])
            ]))
        if not torch.allclose(densities[0], densities[1]):
            raise UnsupportedPriorError(
                "the prior is hierarchical (a latent site's distribution depends on other latent "
                "sites), so its maximum in the unconstrained space has no closed form; use "
                "method='apt' with a flow guide (atomic loss) or method='tsnpe'"
            )
        return torch.cat(modes[0])


def _site_mode(site, node: dict) -> torch.Tensor:
    """Maximizer of one site's prior density in its unconstrained space, flattened."""
    base = node["fn"]  # unwrap batch/event wrappers only (sites.unwrap_distribution also enters transforms)
    while isinstance(base, (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        base = base.base_dist
    shape = node["value"].shape
    if isinstance(base, (dist.Normal, dist.LogNormal, dist.MultivariateNormal)):
        return torch.broadcast_to(base.loc, shape).reshape(-1)  # z = theta, or log theta
    if isinstance(base, dist.Uniform):
        return torch.zeros(shape.numel())  # logistic density of z, largest at 0
    raise UnsupportedPriorError(
        f"latent site '{site.name}' has a {type(base).__name__} prior; this method needs Normal, "
        "LogNormal, MultivariateNormal or Uniform priors (whose density in the unconstrained space "
        "has a known maximum); use method='apt' with a flow guide (atomic loss) or method='tsnpe'"
    )
