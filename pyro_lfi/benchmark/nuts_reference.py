r"""NUTS reference posteriors of tractable models (``bernoulli_glm``, ``sir``, ``lotka_volterra``).

:func:`sample_reference` finds the posterior's modes (:mod:`~pyro_lfi.benchmark.posterior_modes`),
draws importance samples (:mod:`~pyro_lfi.benchmark.importance_check`) and runs Pyro's NUTS
(Hoffman & Gelman 2014) chain after chain on :math:`-\log p(z \mid x_o)` with the exact gradient,
each chain from an importance draw resampled by weight, on coordinates whitened by the Laplace
approximation (:func:`run_nuts`).

A posterior with several modes (SIR's observation 1) is sampled mode by mode: NUTS does cross
the saddle 2.6 nats below the modes, but only every ~25-70 iterations, which would leave the
modes' shares with an error of several percent. So each mode's chains are kept to its basin
(:func:`~pyro_lfi.benchmark.posterior_modes.basin`: the potential is infinite outside, a
divergence to NUTS, whose trajectories stop there and never select such a state), and each basin
contributes draws in proportion to its importance-sampling mass :math:`P_k = \sum_{i \in k} w_i`
(Monte Carlo error ~1e-3). The walls count as divergences (6 % of SIR 1's iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import MCMC, NUTS
from torch import Tensor

from pyro_lfi.benchmark.importance_check import importance
from pyro_lfi.benchmark.posterior_modes import Mode, basin, find_modes
from pyro_lfi.benchmark.tractable import TractablePosterior

__all__ = ["ReferenceRun", "run_nuts", "sample_reference"]


class _NegLogDensity(torch.autograd.Function):
    """``-log p(z | x_o)`` at one point (``+inf`` outside the basin ``region`` of ``modes``), with
    the gradient computed alongside the value."""

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, posterior: TractablePosterior, statistic: Tensor, modes: list[Mode], region: int | None
    ) -> Tensor:
        if region is not None and int(basin(z.detach(), modes)) != region:
            ctx.save_for_backward(torch.zeros_like(z))
            return z.new_tensor(math.inf)
        value, grad = posterior.value_and_grad(z.detach().numpy(), statistic)
        ctx.save_for_backward(torch.as_tensor(-grad, dtype=z.dtype))
        return z.new_tensor(-value)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None, None, None


def run_nuts(
    posterior: TractablePosterior,
    statistic: Tensor,
    num_samples: int,
    starts: Tensor,
    modes: list[Mode],
    region: int | None = None,
    *,
    warmup_steps: int = 300,
) -> tuple[Tensor, int]:
    r"""NUTS chains of ``theta``, one per row of ``starts[num_chains, dim]`` (in ``z``), chain
    after chain on the global RNG; ``region``: keep them in that mode's basin.

    NUTS runs on :math:`u = L^{-1}(z - \hat z)`, :math:`L L^\top = \hat\Sigma` of the mode
    (``modes[region or 0]``; a constant Jacobian), where the posterior is close to :math:`N(0, I)`,
    and still adapts a dense mass matrix. Whitening made it ~8x more efficient on Lotka-Volterra
    (4x less time per draw, twice the effective sample size).

    :returns: ``(chains[num_chains, ceil(num_samples / num_chains), dim], divergences)``.
    """
    mode = modes[region or 0]
    per_chain = math.ceil(num_samples / starts.shape[0])
    tril = torch.linalg.cholesky(mode.covariance)
    chains, divergences = [], 0

    def potential(params: dict[str, Tensor]) -> Tensor:
        return _NegLogDensity.apply(mode.z + tril @ params["u"], posterior, statistic, modes, region)

    for start in starts.double():
        u0 = torch.linalg.solve_triangular(tril, (start - mode.z)[:, None], upper=False)[:, 0]
        mcmc = MCMC(NUTS(potential_fn=potential, full_mass=True), num_samples=per_chain, warmup_steps=warmup_steps,
                    initial_params={"u": u0}, disable_progbar=True)
        mcmc.run()
        divergences += len(mcmc.diagnostics()["divergences"]["chain 0"])
        chains.append(posterior.to_theta(mode.z + mcmc.get_samples()["u"].double() @ tril.T))
    return torch.stack(chains), divergences


@dataclass
class ReferenceRun:
    """What :func:`sample_reference` made."""

    samples: Tensor  #: ``[num_samples, dim]`` of ``theta``, in random order
    parts: list[tuple[Tensor, float]]  #: per basin: its chains ``[num_chains, n, dim]`` and its mass
    modes: list[Mode]
    divergences: int


def sample_reference(
    posterior: TractablePosterior,
    statistic: Tensor,
    num_samples: int,
    *,
    num_chains: int = 4,
    warmup_steps: int = 300,
    num_draws: int = 2**16,
) -> ReferenceRun:
    """``num_samples`` reference draws of ``theta`` (global RNG): modes, importance draws for the
    starts and the basins' masses, then ``num_chains`` NUTS chains per basin with at least 1/1000
    of the mass (the rest is dropped; a single mode has no basin walls)."""
    modes = find_modes(posterior, statistic)
    z, w = importance(posterior, statistic, modes, num_draws)
    member = basin(z, modes)
    mass = torch.stack([w[member == k].sum() for k in range(len(modes))])
    kept = [k for k in range(len(modes)) if mass[k] >= 1e-3]
    mass = mass[kept] / mass[kept].sum()
    counts = _split(num_samples, mass)
    parts, samples, divergences = [], [], 0
    for k, count, share in zip(kept, counts, mass.tolist()):
        inside = member == k
        starts = z[inside][torch.multinomial(w[inside], num_chains, replacement=True)]
        region = k if len(modes) > 1 else None
        chains, diverged = run_nuts(posterior, statistic, count, starts, modes, region, warmup_steps=warmup_steps)
        flat = chains.reshape(-1, chains.shape[-1])
        samples.append(flat[torch.randperm(flat.shape[0])[:count]])
        parts.append((chains, share))
        divergences += diverged
    drawn = torch.cat(samples)
    return ReferenceRun(drawn[torch.randperm(drawn.shape[0])][:num_samples], parts, modes, divergences)


def _split(total: int, shares: Tensor) -> list[int]:
    """``total`` split in proportion to ``shares`` (largest remainders), every part at least 1."""
    exact = shares.double() * total
    counts = exact.floor().long().clamp(min=1)
    for i in (exact - exact.floor()).argsort(descending=True)[: max(0, total - int(counts.sum()))]:
        counts[i] += 1
    return counts.tolist()
