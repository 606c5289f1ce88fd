r"""Posterior draws for many prior-predictive simulations at once (what calibration checks need).

For :math:`(\theta_i, x_i) \sim p(\theta)\,p(x \mid \theta)`, :math:`i = 1..N`, the amortized guide
gives :math:`L` draws :math:`\theta_{ij} \sim q(\theta \mid x_i)` in one batched call, and
optionally the log densities :math:`\log q(\theta_i \mid x_i)` and :math:`\log q(\theta_{ij} \mid x_i)`.
No retraining: amortization makes this one forward pass per batch of observations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..guide.posterior import NeuralPosterior
from ..options import split_options
from ..seeding import preserved_rng, seeded
from ..simulation.campaign import simulate
from ..simulation.simulations import Simulations

__all__ = ["CalibrationDraws", "CalibrationOptions", "calibration_draws", "valid_prior_predictive"]


@dataclass(frozen=True)
class CalibrationOptions:
    """How many draws calibration checks take, and how (one object, or its fields as keywords
    of :func:`calibration_draws`, :func:`~pyro_lfi.diagnostics.sbc`,
    :func:`~pyro_lfi.diagnostics.expected_coverage` and :func:`~pyro_lfi.diagnostics.tarp`).

    :ivar num_simulations: prior-predictive simulations :math:`N`.
    :ivar num_posterior_samples: draws :math:`L` from the guide per simulation.
    :ivar seed: seeds the simulations and the draws (the global RNG state is left untouched).
    :ivar batch_size: observations per call of the guide.
    """

    num_simulations: int = 1000
    num_posterior_samples: int = 200
    seed: int | None = 0
    batch_size: int = 1000

    def __post_init__(self):
        if self.num_simulations < 1 or self.num_posterior_samples < 1:
            raise ValueError(
                f"num_simulations and num_posterior_samples must be positive, got {self.num_simulations} "
                f"and {self.num_posterior_samples}"
            )


@dataclass
class CalibrationDraws:
    """True parameters ``[N, *shape]``, posterior draws ``[L, N, *shape]`` per latent site and,
    if asked for, :math:`\\log q` of the truths ``[N]`` and of the draws ``[L, N]``."""

    truth: dict[str, torch.Tensor]
    draws: dict[str, torch.Tensor]
    log_q_truth: torch.Tensor | None = None
    log_q_draws: torch.Tensor | None = None
    options: CalibrationOptions = CalibrationOptions()  #: how they were drawn

    @property
    def num_simulations(self) -> int:
        return len(next(iter(self.truth.values())))

    @property
    def num_posterior_samples(self) -> int:
        return len(next(iter(self.draws.values())))


def valid_prior_predictive(
    guide: NeuralPosterior, model: Callable, num_simulations: int, args: tuple, seed: int | None, model_kwargs: dict
) -> Simulations:
    """The valid rows of ``num_simulations`` prior-predictive simulations of ``model`` (its
    sites ``guide.observed`` left free), without a progress bar.

    :raises ValueError: if none is valid."""
    sims = simulate(
        model, num_simulations, *args, seed=seed, observed=guide.observed, progress=False, model_kwargs=model_kwargs
    )
    if sims.num_valid == 0:
        raise ValueError(f"no valid simulations among {num_simulations}: {sims.summary()}")
    return sims[sims.valid]


@torch.no_grad()
def calibration_draws(
    guide: NeuralPosterior,
    model: Callable,
    *args,
    options: CalibrationOptions | None = None,
    log_prob: bool = False,
    model_kwargs: dict | None = None,
    **kwargs,
) -> CalibrationDraws:
    """Simulate ``num_simulations`` rows of ``model(*args, **kwargs)`` from the prior and draw
    ``num_posterior_samples`` from ``guide`` at each valid row's observation (see
    :class:`CalibrationOptions`, whose fields may also be given as keywords). Invalid
    simulations are left out. The global RNG state is left untouched.

    :param log_prob: also compute the guide's log densities of the truths and of the draws.
    :param model_kwargs: the model's keyword arguments, for one whose name is an option's.
    """
    options, kwargs = split_options(CalibrationOptions, options, kwargs, model_kwargs)
    num_simulations, num_posterior_samples, seed, batch_size = (
        options.num_simulations, options.num_posterior_samples, options.seed, options.batch_size
    )
    sites = guide.require_built()
    sims = valid_prior_predictive(guide, model, num_simulations, args, seed, kwargs)
    x = sites.flat_data({n: sims.values[n] for n in guide.observed})
    z_true = sites.to_unconstrained(sims.latents)
    zs, log_q_truth, log_q_draws = [], [], []
    with preserved_rng(), seeded(seed):
        for start in range(0, len(x), batch_size):
            q = guide.conditional(x[start : start + batch_size])
            z = q.sample((num_posterior_samples,))
            zs.append(z)
            if log_prob:
                zt = z_true[start : start + batch_size]
                log_q_truth.append(q.log_prob(zt) - sites.log_abs_det_jacobian(zt))
                log_q_draws.append(q.log_prob(z) - sites.log_abs_det_jacobian(z))
    draws = sites.to_constrained(torch.cat(zs, dim=1))[0]
    truth = {n: sims.values[n] for n in sites.latent_names}
    if not log_prob:
        return CalibrationDraws(truth, draws, options=options)
    return CalibrationDraws(truth, draws, torch.cat(log_q_truth), torch.cat(log_q_draws, dim=1), options)
