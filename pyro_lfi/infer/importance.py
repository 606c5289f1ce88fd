r"""Posterior draws of a tractable Pyro model by adaptive importance sampling (population Monte
Carlo with a fitted mixture proposal, Cappé et al. 2004, 2008).

For a posterior of a few dimensions, many density evaluations in one batch cost less than
NUTS's gradient steps one after another: a learned likelihood scores 10,000 rows in about the time
of ten leapfrog steps. In the unconstrained space of the latent sites, :math:`\theta = T(u)`
(each site through ``biject_to`` of its support), the target is

.. math:: \pi(u) \propto p(T(u))\, \lvert\det J_T(u)\rvert\, p(x_o \mid T(u)).

Starting from prior draws weighted by their likelihood (or a
:class:`~pyro_lfi.infer.candidates.WarmStart`), each adaptation step resamples the weighted
population, fits a mixture of ``components`` Gaussians to the distinct resampled points by EM
(scikit-learn), widens it to Student-t's with ``df`` degrees of freedom, and draws a new population
from the defensive mixture

.. math:: q(u) = (1 - \alpha)\, \sum_k \pi_k\, t_{\nu}(u; \mu_k, \Sigma_k) + \alpha\, p_U(u),

(:math:`\alpha` = ``defensive``; the prior's share keeps every weight below
:math:`p(x_o \mid \theta) / \alpha`), weighted by :math:`w = \pi(u) / q(u)` up to a constant. After
``adapt_steps`` steps the proposal is kept, and populations are drawn until their Kish ESS
:math:`(\sum w)^2 / \sum w^2` reaches ``min_ess``; ``num_samples`` draws are resampled from them.
The Pareto :math:`\hat k` of the weights (PSIS, Vehtari et al. 2024, computed by ArviZ) says
whether the estimate can be trusted: above 0.7 the proposal misses part of the posterior, and a
warning says so (NUTS, :func:`~pyro_lfi.posterior_chains`, is the sampler for such posteriors
and for many dimensions).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro.distributions as dist
import torch
from sklearn.mixture import GaussianMixture
from torch.distributions import biject_to

from ..arviz_compat import pareto_k
from ..model.schema import ModelSchema
from ..seeding import preserved_rng, seeded
from .candidates import WarmStart, log_densities, prior_draws, read_sites
from .resampling import finite_or_zero_weight, systematic_resample

__all__ = ["ImportanceSamples", "importance_posterior", "kish_ess"]

#: Pareto k-hat above which importance sampling estimates are unreliable (Vehtari et al. 2024)
PARETO_K_LIMIT = 0.7


@dataclass
class ImportanceSamples:
    """Draws of a posterior resampled from weighted importance draws.

    :ivar samples: site name → ``[num_samples, *site_shape]``.
    :ivar ess: Kish effective sample size of the weighted draws they were resampled from.
    :ivar pareto_k: Pareto :math:`\\hat k` of those weights (under 0.7: reliable).
    :ivar num_evaluations: model evaluations in all (adaptation included).
    :ivar sampling_time: wall time in seconds of the whole run.
    """

    samples: dict[str, torch.Tensor]
    ess: float
    pareto_k: float
    num_evaluations: int
    sampling_time: float

    def get_samples(self) -> dict[str, torch.Tensor]:
        return dict(self.samples)

    @property
    def effective_draws(self) -> float:
        r"""The effective size of the returned draws, :math:`1 / (1/\mathrm{ESS} + 1/n)`: resampling
        :math:`n` of them adds its own noise to that of the weights."""
        n = len(next(iter(self.samples.values())))
        return 1 / (1 / self.ess + 1 / n)

    def ess_per_second(self) -> float:
        """:attr:`effective_draws` per second of :attr:`sampling_time`."""
        return self.effective_draws / self.sampling_time


def kish_ess(log_weights: torch.Tensor) -> float:
    r"""Kish's effective sample size :math:`(\sum w)^2 / \sum w^2` of log weights."""
    weights = torch.softmax(finite_or_zero_weight(log_weights), 0)
    return float(1 / (weights**2).sum())


def importance_posterior(
    model: Callable,
    num_samples: int,
    *args,
    num_candidates: int = 10_000,
    adapt_steps: int = 3,
    components: int = 8,
    df: float = 5.0,
    defensive: float = 0.1,
    min_ess: float | None = None,
    max_candidates: int = 1_000_000,
    seed: int | None = 0,
    warm_start: WarmStart | None = None,
    **kwargs,
) -> ImportanceSamples:
    """``num_samples`` draws of the posterior of ``model(*args, **kwargs)`` by adaptive importance
    sampling (see the module docs); the model as for :func:`~pyro_lfi.sample_posterior`.

    :param num_candidates: rows of each population (one vectorized model run each).
    :param adapt_steps: proposals fitted after the first population.
    :param components: mixture components of the proposal (at most; fewer for few distinct points).
    :param df: degrees of freedom of the proposal's Student-t's (heavier tails than the fit).
    :param defensive: the prior's share of every population.
    :param min_ess: Kish ESS at which to stop drawing (default ``2 * num_samples``).
    :param max_candidates: model evaluations after which no population is added (adaptation
        included; a warning if ``min_ess`` is not reached by then).
    :param seed: seeds everything; ``None`` draws from the global streams. Either way the global
        RNG state is left as it was.
    :param warm_start: draws of an earlier approximation of this posterior to start from, in
        place of ``num_candidates`` prior draws.
    """
    _check(num_samples, num_candidates, adapt_steps, defensive)
    min_ess = 2 * num_samples if min_ess is None else min_ess
    with seeded(seed) if seed is not None else preserved_rng():
        start = time.perf_counter()
        target = _Target(model, args, kwargs, defensive)
        if warm_start is None:
            values, _, log_likelihood = prior_draws(model, num_candidates, args, kwargs)
            u, log_w = target.space.flatten(values), log_likelihood.double()
        else:
            values, log_w = warm_start.weighted(model, args, kwargs)
            u = target.space.flatten(values)
        evaluations = len(u)
        for _ in range(adapt_steps):
            u, values, log_w = target.population(_fit_proposal(u, log_w, components, df), num_candidates)
            evaluations += num_candidates
        proposal, pool = _fit_proposal(u, log_w, components, df), []
        while not pool or (kish_ess(torch.cat([p[2] for p in pool])) < min_ess and evaluations < max_candidates):
            pool.append(target.population(proposal, num_candidates))
            evaluations += num_candidates
        log_w = torch.cat([p[2] for p in pool])
        chosen = systematic_resample(log_w, num_samples)[torch.randperm(num_samples)]
        samples = {name: torch.cat([p[1][name] for p in pool])[chosen] for name in pool[0][1]}
        result = ImportanceSamples(samples, kish_ess(log_w), pareto_k(log_w.numpy()), evaluations,
                                   time.perf_counter() - start)
    _warn_if_unreliable(result, min_ess)
    return result


class _UnconstrainedSpace:
    """The latent sites of a model as one flat unconstrained vector per row."""

    def __init__(self, schema: ModelSchema):
        self.transforms = {name: biject_to(schema.sites[name].support) for name in schema.latents}
        self.shapes: dict[str, torch.Size] = {}
        self.dtype = torch.get_default_dtype()

    def flatten(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[n, D]`` unconstrained values of latent values ``[n, *site_shape]``."""
        parts = []
        for name, transform in self.transforms.items():
            u = transform.inv(values[name])
            self.shapes[name], self.dtype = u.shape[1:], u.dtype
            parts.append(u.reshape(len(u), -1))
        return torch.cat(parts, -1)

    def unflatten(self, u: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        r"""The latent values of ``u`` ``[n, D]`` and :math:`\log\lvert\det J_T(u)\rvert` ``[n]``."""
        values, log_jacobian, offset = {}, torch.zeros(len(u), dtype=torch.float64), 0
        for name, transform in self.transforms.items():
            size = self.shapes[name].numel()
            part = u[:, offset : offset + size].to(self.dtype).reshape(len(u), *self.shapes[name])
            offset += size
            values[name] = transform(part)
            jacobian = transform.log_abs_det_jacobian(part, values[name])  # [n, ...], or a scalar
            rows = jacobian.expand(len(u), *jacobian.shape[1:]) if jacobian.dim() else jacobian.expand(len(u))
            log_jacobian = log_jacobian + rows.reshape(len(u), -1).sum(-1).double()
        return values, log_jacobian


class _Target:
    """The posterior in the unconstrained space, scored against a defensive mixture proposal."""

    def __init__(self, model: Callable, args: tuple, kwargs: dict, defensive: float):
        self.model, self.args, self.kwargs, self.defensive = model, args, kwargs, defensive
        self.space = _UnconstrainedSpace(read_sites(model, args, kwargs)[0])

    def population(
        self, proposal: dist.Distribution, num: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``num`` draws of the defensive mixture (the prior's share drawn from the model itself):
        unconstrained ``[num, D]``, latent values, and log weights ``[num]``."""
        from_prior = round(self.defensive * num)
        u = proposal.sample((num - from_prior,))
        if from_prior:
            drawn = prior_draws(self.model, from_prior, self.args, self.kwargs)[0]
            u = torch.cat([u, self.space.flatten(drawn).double()])
        values, log_jacobian = self.space.unflatten(u)
        log_prior, log_likelihood = log_densities(self.model, values, self.args, self.kwargs)
        log_prior = log_prior.double() + log_jacobian
        log_q = torch.logaddexp(
            math.log1p(-self.defensive) + proposal.log_prob(u),
            (math.log(self.defensive) if self.defensive else -math.inf) + log_prior,
        )
        return u, values, log_prior + log_likelihood.double() - log_q


def _fit_proposal(u: torch.Tensor, log_w: torch.Tensor, components: int, df: float) -> dist.Distribution:
    """A mixture of Student-t's fitted by EM to the distinct points among 2,000 resampled from
    ``u`` (``[n, D]``) by their weights (the ``4 (D + 1)`` highest-weighted where fewer), each
    component given at least ``4 (D + 1)`` points."""
    least = 4 * (u.shape[1] + 1)
    points = _distinct(u[systematic_resample(log_w, 2_000)])
    if len(points) < least:
        points = _distinct(u[torch.topk(finite_or_zero_weight(log_w), min(least, len(u))).indices])
    k = max(1, min(components, len(points) // least))
    mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, max_iter=200,
                              random_state=int(torch.randint(2**31 - 1, ()))).fit(points)
    scale_tril = torch.linalg.cholesky(torch.as_tensor(mixture.covariances_))
    components_ = dist.MultivariateStudentT(torch.tensor(float(df), dtype=torch.float64),
                                            torch.as_tensor(mixture.means_), scale_tril)
    return dist.MixtureSameFamily(dist.Categorical(torch.as_tensor(mixture.weights_)), components_)


def _distinct(points: torch.Tensor) -> np.ndarray:
    """The distinct rows of ``points`` (resampled, or a warm start's, values repeat)."""
    return np.unique(points.double().numpy(), axis=0)


def _check(num_samples: int, num_candidates: int, adapt_steps: int, defensive: float) -> None:
    if num_samples < 1 or num_candidates < 2:
        raise ValueError(f"num_samples={num_samples} and num_candidates={num_candidates}: give positive numbers "
                         "(at least 2 candidates)")
    if adapt_steps < 0 or not 0 <= defensive < 1:
        raise ValueError(f"adapt_steps={adapt_steps} must be >= 0 and defensive={defensive} in [0, 1)")


def _warn_if_unreliable(result: ImportanceSamples, min_ess: float) -> None:
    if result.pareto_k > PARETO_K_LIMIT or not np.isfinite(result.pareto_k):
        warnings.warn(
            f"the importance weights are heavy-tailed (Pareto k-hat {result.pareto_k:.2f} > {PARETO_K_LIMIT}): the "
            "proposal misses part of the posterior and the draws may too; raise adapt_steps or num_candidates, or "
            "sample with NUTS (pyro_lfi.posterior_chains)",
            stacklevel=3,
        )
    elif result.ess < min_ess:
        warnings.warn(
            f"the importance draws reached an ESS of {result.ess:.0f}, under min_ess={min_ess:.0f}, within "
            f"{result.num_evaluations} model evaluations: the {len(next(iter(result.samples.values())))} draws "
            "repeat some points; raise max_candidates",
            stacklevel=3,
        )
