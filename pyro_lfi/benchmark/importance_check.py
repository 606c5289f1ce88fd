r"""Importance sampling of tractable posteriors: the MCMC-free check of the NUTS references.

The proposal is the defensive mixture :math:`q = 0.9 \sum_k \pi_k\, t_5(\hat z_k, \hat\Sigma_k) +
0.1\, p(z)` of the modes' Laplace approximations, widened to Student-t's, with
:math:`\pi_k \propto p(\hat z_k \mid x_o) |\hat\Sigma_k|^{1/2}` (each mode's Laplace mass), and the
prior. Its weights :math:`w = p(z \mid x_o) / q \le 10\, p(x_o \mid z)\, /\, p(x_o)` stay bounded
even where the Laplace approximations are poor (Hesterberg 1995). Self-normalized importance
sampling then gives posterior means and standard deviations with no MCMC at all (:func:`validate`
compares the NUTS chains with them, as :mod:`pyro_lfi.benchmark.slcp_posterior` does for SLCP), and
resampled draws are where the chains start.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor

from pyro_lfi.benchmark.posterior_modes import Mode, laplace_log_mass
from pyro_lfi.benchmark.tractable import TractablePosterior

__all__ = ["DefensiveProposal", "importance", "importance_moments", "validate"]

DEFENSIVE = 0.1  # the prior's share of the proposal


class DefensiveProposal:
    r""":math:`q = 0.9 \sum_k \pi_k t_5(\hat z_k, \hat\Sigma_k) + 0.1\, p(z)` over ``z`` (float64)."""

    def __init__(self, posterior: TractablePosterior, modes: list[Mode], df: float = 5.0) -> None:
        locs = torch.stack([m.z for m in modes])
        trils = torch.linalg.cholesky(torch.stack([m.covariance for m in modes]))
        student = dist.MultivariateStudentT(torch.tensor(df, dtype=torch.float64), locs, trils)
        weights = dist.Categorical(logits=torch.tensor([laplace_log_mass(m) for m in modes], dtype=torch.float64))
        self.laplace = dist.MixtureSameFamily(weights, student)
        self.prior = posterior.prior

    def sample(self, num: int) -> Tensor:
        """``num`` draws (global RNG)."""
        from_prior = torch.rand(num) < DEFENSIVE
        return torch.where(from_prior[:, None], self.prior.sample((num,)), self.laplace.sample((num,)))

    def log_prob(self, z: Tensor) -> Tensor:
        """:math:`\\log q(z)`."""
        return torch.logaddexp(
            math.log(1 - DEFENSIVE) + self.laplace.log_prob(z), math.log(DEFENSIVE) + self.prior.log_prob(z)
        )


def importance(
    posterior: TractablePosterior, statistic: Tensor, modes: list[Mode], num_draws: int = 2**18, batch: int = 2**16
) -> tuple[Tensor, Tensor]:
    """``(z[num_draws, dim], normalized weights[num_draws])`` from :class:`DefensiveProposal` (global RNG)."""
    q = DefensiveProposal(posterior, modes)
    draws, log_w = [], []
    for start in range(0, num_draws, batch):
        z = q.sample(min(batch, num_draws - start))
        draws.append(z)
        log_w.append(torch.nan_to_num(posterior.log_density(z, statistic) - q.log_prob(z), nan=-math.inf))
    return torch.cat(draws), torch.softmax(torch.cat(log_w), dim=0)


def importance_moments(
    posterior: TractablePosterior, statistic: Tensor, modes: list[Mode], num_draws: int = 2**18
) -> tuple[Tensor, Tensor, float]:
    r"""Posterior mean and std of ``theta`` by :func:`importance`, and
    :math:`\mathrm{ESS} = (\sum w)^2 / \sum w^2`."""
    z, w = importance(posterior, statistic, modes, num_draws)
    theta = posterior.to_theta(z)
    mean = (w[:, None] * theta).sum(0)
    std = (w[:, None] * (theta - mean) ** 2).sum(0).sqrt()
    return mean, std, float(1.0 / (w**2).sum())


def validate(
    posterior: TractablePosterior,
    statistic: Tensor,
    parts: list[tuple[Tensor, float]],
    modes: list[Mode],
    num_draws: int = 2**18,
) -> dict[str, Tensor | float]:
    r"""NUTS chains against :func:`importance_moments`.

    :param parts: per basin, its chains ``[num_chains, n, dim]`` of ``theta`` and its mass
        :math:`P_k` (one part with mass 1 for a unimodal posterior).
    :returns: the IS effective sample size; the chains' bulk ESS (summed over basins) and
        split-:math:`\hat R` (the largest over basins); ``z``: the difference of the means over
        :math:`\sqrt{\sigma^2/\mathrm{ESS}_{IS} + \sum_k P_k^2 \sigma_k^2 / \mathrm{ESS}_k}` (|z| of a
        few is noise); ``std_ratio``: NUTS over IS posterior standard deviation.
    """
    mean, std, ess = importance_moments(posterior, statistic, modes, num_draws)
    nuts_mean = sum(mass * chains.double().mean((0, 1)) for chains, mass in parts)
    second = sum(mass * (chains.double() ** 2).mean((0, 1)) for chains, mass in parts)
    nuts_ess = [effective_sample_size(chains.double()) for chains, _ in parts]
    nuts_var = sum(
        mass**2 * chains.double().reshape(-1, chains.shape[-1]).var(0) / part_ess
        for (chains, mass), part_ess in zip(parts, nuts_ess)
    )
    return {
        "is_ess": ess,
        "nuts_ess": sum(nuts_ess),
        "rhat": torch.stack([split_gelman_rubin(chains.double()) for chains, _ in parts]).amax(0),
        "z": (nuts_mean - mean) / (std**2 / ess + nuts_var).sqrt(),
        "std_ratio": (second - nuts_mean**2).sqrt() / std,
    }
