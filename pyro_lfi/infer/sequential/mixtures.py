r"""Closed-form operations on Gaussian mixtures
:math:`\sum_k \alpha_k \mathcal{N}(z; m_k, S_k)`, as returned by the mixture density network
(:class:`~pyro.distributions.MixtureSameFamily` of
:class:`~pyro.distributions.MultivariateNormal`), used by SNPE-A and the non-atomic APT loss."""

from __future__ import annotations

import torch
from pyro.distributions import Categorical, MixtureSameFamily, MultivariateNormal
from torch.distributions import Distribution

from ...errors import GaussianDivisionError

__all__ = ["GaussianDivisionError", "as_mixture", "divide_by_gaussian", "first_component", "is_gaussian_mixture",
           "log_mixture_overlap", "moment_matched_gaussian"]


def is_gaussian_mixture(q: Distribution) -> bool:
    return isinstance(q, MixtureSameFamily) and isinstance(q.component_distribution, MultivariateNormal)


def log_mixture_overlap(q: MixtureSameFamily, r: MixtureSameFamily) -> torch.Tensor:
    r""":math:`\log \int q(z)\, r(z)\, dz` for two Gaussian mixtures (``q`` may be batched):
    :math:`\int \mathcal{N}(z; m_k, S_k)\,\mathcal{N}(z; \mu_l, \Sigma_l)\,dz =
    \mathcal{N}(m_k; \mu_l, S_k + \Sigma_l)`."""
    q_logits = q.mixture_distribution.logits.log_softmax(-1)  # [*b, K]
    r_logits = r.mixture_distribution.logits.log_softmax(-1)  # [L]
    qc, rc = q.component_distribution, r.component_distribution
    cov = qc.covariance_matrix.unsqueeze(-3) + rc.covariance_matrix  # [*b, K, L, D, D]
    overlap = MultivariateNormal(rc.loc, covariance_matrix=cov).log_prob(qc.loc.unsqueeze(-2))  # [*b, K, L]
    return (q_logits.unsqueeze(-1) + r_logits + overlap).flatten(-2).logsumexp(-1)


def moment_matched_gaussian(q: MixtureSameFamily) -> MultivariateNormal:
    """The Gaussian with the mixture's mean and covariance (an unbatched mixture)."""
    weights = q.mixture_distribution.probs  # [K]
    comps = q.component_distribution
    mean = (weights[:, None] * comps.loc).sum(0)
    spread = comps.loc - mean
    cov = (weights[:, None, None] * (comps.covariance_matrix + spread[:, :, None] * spread[:, None, :])).sum(0)
    return MultivariateNormal(mean, covariance_matrix=cov)


def as_mixture(g: MultivariateNormal) -> MixtureSameFamily:
    """A Gaussian as a one-component mixture."""
    return MixtureSameFamily(
        Categorical(logits=torch.zeros(g.batch_shape + (1,))),
        MultivariateNormal(g.loc.unsqueeze(-2), scale_tril=g.scale_tril.unsqueeze(-3)),
    )


def first_component(q: MixtureSameFamily) -> MixtureSameFamily:
    r"""The mixture's first component :math:`\mathcal{N}(z; m_1, S_1)` as a one-component mixture
    (batched like ``q``)."""
    comps = q.component_distribution
    return MixtureSameFamily(
        Categorical(logits=q.mixture_distribution.logits[..., :1]),
        MultivariateNormal(comps.loc[..., :1, :], scale_tril=comps.scale_tril[..., :1, :, :]),
    )


def divide_by_gaussian(
    q: MixtureSameFamily, g: MultivariateNormal, max_dropped_weight: float = 1e-3
) -> MixtureSameFamily:
    r"""The normalized mixture proportional to :math:`q(z) / g(z)`.

    Component :math:`k` becomes :math:`\mathcal{N}(m'_k, S'_k)` with
    :math:`S_k'^{-1} = S_k^{-1} - \Sigma^{-1}` and :math:`m'_k = S'_k(S_k^{-1} m_k - \Sigma^{-1}\mu)`;
    its weight is :math:`\alpha_k c_k` with
    :math:`c_k = \mathcal{N}(z; m_k, S_k) / (g(z)\, \mathcal{N}(z; m'_k, S'_k))` at any :math:`z`.

    A component wider than :math:`g` in some direction (:math:`S_k^{-1} - \Sigma^{-1}` not positive
    definite) has no normalizable ratio; such components are dropped when their weights sum to at
    most ``max_dropped_weight``.

    :raises GaussianDivisionError: where the components that cannot be divided weigh more.
    """
    comps = q.component_distribution
    g_precision = g.precision_matrix
    precision = comps.precision_matrix - g_precision
    _, info = torch.linalg.cholesky_ex(precision)
    wide = info != 0  # [*b, K]
    log_weights = q.mixture_distribution.logits.log_softmax(-1)
    dropped = torch.where(wide, log_weights.exp(), 0.0).sum(-1)
    if (dropped > max_dropped_weight).any():
        raise GaussianDivisionError(
            f"mixture components of total weight up to {dropped.max().item():.2g} are wider than the "
            "Gaussian they are divided by in some direction, so their ratio cannot be normalized"
        )
    precision = torch.where(wide[..., None, None], comps.precision_matrix, precision)  # dropped below
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    loc = (cov @ (comps.precision_matrix @ comps.loc.unsqueeze(-1) - (g_precision @ g.loc).unsqueeze(-1))).squeeze(-1)
    divided = MultivariateNormal(loc, covariance_matrix=cov)
    log_c = comps.log_prob(loc) - g.log_prob(loc) - divided.log_prob(loc)
    logits = torch.where(wide, -torch.inf, log_weights + log_c)
    return MixtureSameFamily(Categorical(logits=logits), divided)
