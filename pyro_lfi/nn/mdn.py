r"""Mixture density networks: a Gaussian mixture whose weights, means and full covariances are
functions of the context (Bishop 1994; Papamakarios & Murray 2016).

.. math:: q(z \mid c) = \sum_{k=1}^K \alpha_k(c)\, \mathcal{N}(z;\, m_k(c),\, L_k(c) L_k(c)^\top)

The mixture is returned in closed form (:class:`~pyro.distributions.MixtureSameFamily` of
:class:`~pyro.distributions.MultivariateNormal` with ``scale_tril``), so sequential methods can
use its weights, means and Cholesky factors analytically.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from .estimator import ConditionalDensityEstimator
from .mlp import MLP

__all__ = ["MixtureDensityNetwork"]


class MixtureDensityNetwork(ConditionalDensityEstimator):
    """A ``components``-component full-covariance Gaussian mixture conditioned on the context.

    :param features: dimension D of ``z``.
    :param context: dimension of the context.
    :param components: number of mixture components K.
    :param hidden_features: widths of the shared hidden layers.
    :param min_scale: floor on the diagonal of each Cholesky factor (standardized units).
    """

    def __init__(
        self,
        features: int,
        context: int,
        components: int = 10,
        hidden_features: Sequence[int] = (64, 64),
        min_scale: float = 1e-3,
    ):
        super().__init__(features, context)
        self.components = components
        self.min_scale = min_scale
        d, k = features, components
        self.num_tril = d * (d - 1) // 2
        self.net = MLP(context, k * (1 + 2 * d + self.num_tril), hidden_features)
        self.register_buffer("tril_rows", torch.tril_indices(d, d, offset=-1)[0], persistent=False)
        self.register_buffer("tril_cols", torch.tril_indices(d, d, offset=-1)[1], persistent=False)

    def forward(self, context: torch.Tensor) -> dist.MixtureSameFamily:
        d, k = self.features, self.components
        out = self.net(context)
        batch = out.shape[:-1]
        logits, loc, diag, off = out.split([k, k * d, k * d, k * self.num_tril], dim=-1)
        loc = loc.reshape(batch + (k, d))
        # softplus(x + 0.5413) = 1 at x = 0: components start at unit scale.
        diag = softplus(diag.reshape(batch + (k, d)) + 0.5413) + self.min_scale
        tril = torch.diag_embed(diag)
        tril[..., self.tril_rows, self.tril_cols] = off.reshape(batch + (k, self.num_tril))
        mean, std = self.standardize.mean, self.standardize.std
        return dist.MixtureSameFamily(
            dist.Categorical(logits=logits),
            dist.MultivariateNormal(mean + std * loc, scale_tril=std.unsqueeze(-1) * tril),
        )

    @torch.no_grad()
    def replicate_first_component(self, noise: float = 1e-2) -> None:
        """Make every component a copy of the first (weights of the output layer, perturbed by
        ``noise``): SNPE-A's start of its final round, after rounds that fitted the first
        component alone, so that no component begins wider than the fitted one."""
        d, k = self.features, self.components
        last = self.net[-1]
        start = 0
        for width in (1, d, d, self.num_tril):  # logits, loc, diag, off-diagonal: k blocks of width each
            for param in (last.weight, last.bias):
                block = param[start : start + k * width].view(k, width, *param.shape[1:])
                block[1:] = block[:1] + noise * torch.randn_like(block[1:])
            start += k * width
