r"""Proposal distributions of sequential rounds, all over the flat unconstrained latents ``z``.

Each one samples in bounded time: a rejection sampler stops after ``max_draws_per_sample``
candidates per requested sample and raises :class:`ProposalError` rather than loop on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from pyro.distributions import MixtureSameFamily
from torch.distributions import Distribution

from ...errors import ProposalError
from ...model.prior import Prior

__all__ = ["GuideProposal", "PriorTimesMixture", "Proposal", "ProposalError", "RestrictedProposal", "TruncatedPrior"]


class Proposal(Protocol):
    r"""What a round draws its parameters from: :math:`\tilde p(z)` over the flat unconstrained
    latents, with a ``name`` for the round's record."""

    name: str

    def sample(self, num_samples: int) -> torch.Tensor:
        """``[num_samples, D]`` draws of ``z``."""
        ...


class GuideProposal:
    r"""The current posterior estimate at the observation, :math:`\tilde p(z) = q(z \mid x_o)`."""

    name = "guide"

    def __init__(self, q: Distribution):
        self.q = q

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        return self.q.sample((num_samples,))


def _rejection(
    propose, log_accept, num_samples: int, max_draws_per_sample: int, what: str
) -> tuple[torch.Tensor, float]:
    """Draw from ``propose(m)`` and keep each candidate with probability ``exp(log_accept(z))``
    until ``num_samples`` are kept; at most ``max_draws_per_sample * num_samples`` candidates."""
    kept, count, drawn, rate = [], 0, 0, 1.0
    budget = max_draws_per_sample * num_samples
    while count < num_samples and drawn < budget:
        chunk = int(min(budget - drawn, 500_000, max(1_000, 1.2 * (num_samples - count) / max(rate, 1e-6))))
        z = propose(chunk)
        accept = torch.rand(chunk).log() < log_accept(z)
        kept.append(z[accept])
        count += int(accept.sum())
        drawn += chunk
        rate = max(count, 1) / drawn
    if count < num_samples:
        raise ProposalError(
            f"{what}: only {count} of {num_samples} samples accepted after {drawn} candidates "
            f"(acceptance rate {count / drawn:.1e}); the posterior estimate lies where the prior has "
            "almost no mass"
        )
    return torch.cat(kept)[:num_samples], count / drawn


class PriorTimesMixture:
    r""":math:`\tilde p(z) \propto p(z)\, r(z)` with :math:`r` a Gaussian mixture (the guide at the
    observation): sampled exactly by rejection from :math:`r`, accepting with probability
    :math:`p(z) / p(z^*)` where :math:`z^*` is the prior's mode. Because :math:`\tilde p / p
    \propto r`, the non-atomic APT loss and the SNPE-A correction involve :math:`r` only."""

    name = "prior x mixture"

    def __init__(self, prior: Prior, factor: MixtureSameFamily, max_draws_per_sample: int = 1000):
        self.prior = prior
        self.factor = factor
        self.max_draws_per_sample = max_draws_per_sample
        self.log_bound = prior.log_prob(prior.mode()[None])[0]
        self.acceptance = math.nan

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        z, self.acceptance = _rejection(
            lambda m: self.factor.sample((m,)),
            lambda z: self.prior.log_prob(z) - self.log_bound,
            num_samples,
            self.max_draws_per_sample,
            "proposal prior x posterior estimate",
        )
        return z


def _log_validity_threshold(threshold: float) -> float:
    r""":math:`\log \gamma` of a validity threshold :math:`\gamma \in (0, 1]` (1: a quantile of
    predictions that saturated in float32)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the validity threshold must lie in (0, 1], got {threshold}")
    return math.log(threshold)


class TruncatedPrior:
    r"""The prior restricted to the highest-density region of the guide at the observation
    (Deistler et al. 2022): :math:`\tilde p(z) \propto p(z)\, \mathbb{1}[\log q(z \mid x_o) \ge
    \tau]`, with :math:`\tau` the ``quantile`` of :math:`\log q` under :math:`q` itself, so the
    region holds :math:`1 - \epsilon` of the guide's mass.

    Sampled by rejection from the prior; when the acceptance rate is too low to finish within
    ``max_draws_per_sample`` candidates per sample, by sampling-importance-resampling from the
    guide instead (candidates from :math:`q` in the region, weighted by :math:`p/q`), which is
    approximate for a finite ``oversampling``.

    :meth:`restricted` also cuts the region to where a classifier predicts a valid simulation,
    :math:`P(\text{valid} \mid z) \ge \gamma`. The classifier (a small network) is tested
    first, so the guide's density is evaluated only where the simulator is predicted to work:
    one rejection loop over both regions, rather than a loop over the classifier around a loop
    over the guide.
    """

    name = "truncated prior"

    def __init__(
        self,
        prior: Prior,
        q: Distribution,
        quantile: float = 1e-4,
        num_threshold_samples: int = 10_000,
        max_draws_per_sample: int = 1000,
        oversampling: int = 32,
    ):
        if not 0 <= quantile < 1:
            raise ValueError(f"quantile must lie in [0, 1), got {quantile}")
        self.prior, self.q = prior, q
        self.max_draws_per_sample = max_draws_per_sample
        self.oversampling = oversampling
        with torch.no_grad():
            log_q = q.log_prob(q.sample((num_threshold_samples,)))
        self.threshold = torch.quantile(log_q, quantile).item()
        self.acceptance = math.nan
        self.method = ""
        self.log_prob_valid: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.log_validity_threshold = -math.inf

    def restricted(self, log_prob_valid: Callable[[torch.Tensor], torch.Tensor], threshold: float) -> TruncatedPrior:
        r"""This proposal, cut to :math:`\log P(\text{valid} \mid z) \ge \log \gamma` (``threshold``)."""
        self.log_prob_valid, self.log_validity_threshold = log_prob_valid, _log_validity_threshold(threshold)
        self.name = f"{type(self).name}, restricted to P(valid) >= {threshold:g}"
        return self

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each row of ``z`` lies in the region (once :meth:`restricted`, also where the
        simulator is predicted to work; the guide is then evaluated on those rows only)."""
        inside = self.predicted_valid(z)
        if inside.any():
            inside[inside.clone()] = self.q.log_prob(z[inside]) >= self.threshold
        return inside

    def predicted_valid(self, z: torch.Tensor) -> torch.Tensor:
        """Whether the classifier of :meth:`restricted` lets each row of ``z`` through (all, before)."""
        if self.log_prob_valid is None:
            return torch.ones(len(z), dtype=torch.bool)
        return self.log_prob_valid(z) >= self.log_validity_threshold

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        pilot = self.prior.sample(10_000)
        rate = self.contains(pilot).float().mean().item()
        if rate * self.max_draws_per_sample >= 1.5:
            self.method = "rejection"
            z, self.acceptance = _rejection(
                self.prior.sample,
                lambda z: torch.where(self.contains(z), 0.0, -math.inf),
                num_samples,
                self.max_draws_per_sample,
                self.name,
            )
            return z
        self.method, self.acceptance = "sir", rate
        return self._sir(num_samples)

    def _sir(self, num_samples: int) -> torch.Tensor:
        candidates = self.q.sample((self.oversampling * num_samples,))
        log_q = self.q.log_prob(candidates)
        inside = (log_q >= self.threshold) & self.predicted_valid(candidates)
        log_w = torch.where(inside, self.prior.log_prob(candidates) - log_q, -math.inf)
        if not torch.isfinite(log_w).any():
            hint = "" if self.log_prob_valid is None else (
                "; the validity classifier admits none of them: lower restrict, or set its threshold from "
                "the valid simulations with restrict=pyro_lfi.Restriction(false_negatives=0.05)"
            )
            raise ProposalError(
                f"{self.name}: no candidate from the posterior estimate has positive prior density "
                f"inside its region{hint}"
            )
        index = torch.multinomial((log_w - log_w.max()).exp(), num_samples, replacement=True)
        return candidates[index]


class RestrictedProposal:
    r"""A proposal restricted to where the simulator is predicted to work (Lueckmann et al. 2017;
    Deistler et al. 2022): :math:`\tilde p_R(z) \propto \tilde p(z)\,
    \mathbb{1}[P(\text{valid} \mid z) \ge \gamma]`, with :math:`P(\text{valid} \mid z)` a
    classifier trained on every simulation so far. Sampled by rejection from ``base``."""

    def __init__(self, base, log_prob_valid, threshold: float = 0.5, max_draws_per_sample: int = 1000):
        self.base, self.log_prob_valid = base, log_prob_valid
        self.log_threshold = _log_validity_threshold(threshold)
        self.max_draws_per_sample = max_draws_per_sample
        self.name = f"{base.name}, restricted to P(valid) >= {threshold:g}"
        self.acceptance = math.nan

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        z, self.acceptance = _rejection(
            self.base.sample,
            lambda z: torch.where(self.log_prob_valid(z) >= self.log_threshold, 0.0, -math.inf),
            num_samples,
            self.max_draws_per_sample,
            f"{self.base.name} restricted to where the simulator works",
        )
        return z
