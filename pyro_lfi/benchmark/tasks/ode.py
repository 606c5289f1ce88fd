r"""ODE tasks: SIR and Lotka-Volterra (sbibm ``sir``, ``lotka_volterra``; Lueckmann et al. 2021,
appendix T.9 and T.10), solved by classical fixed-step Runge-Kutta (RK4), batched in torch.

* ``sir``: :math:`\beta \sim \mathrm{LogNormal}(\log 0.4, 0.5)`, :math:`\gamma \sim
  \mathrm{LogNormal}(\log 0.125, 0.2)`; :math:`\dot S = -\beta S I / N`, :math:`\dot I = \beta S I / N
  - \gamma I` (:math:`R = N - S - I`), :math:`N = 10^6`, :math:`(S, I)(0) = (N - 1, 1)`;
  :math:`x_k \sim \mathrm{Binomial}(1000, I(t_k) / N)` at days :math:`t_k = 0, 17, \dots, 153`
  (sbibm's every 17th of 161 daily values). Solved for :math:`(S/N, I/N)` with step 0.25 days.
* ``lotka_volterra``: :math:`(\alpha, \beta, \gamma, \delta) \sim \mathrm{LogNormal}((-0.125, -3,
  -0.125, -3), 0.5)`; :math:`\dot u = \alpha u - \beta u v`, :math:`\dot v = -\gamma v + \delta u v`,
  :math:`(u, v)(0) = (30, 1)`; :math:`x \sim \mathrm{LogNormal}(\log \min(\max(\cdot, 10^{-10}),
  10^4), 0.1)` of :math:`u` then :math:`v` at :math:`t_k = 0, 2.1, \dots, 18.9` (sbibm's every
  21st of 201 values 0.1 apart). Solved for :math:`(\log u, \log v)`, whose equations
  :math:`\dot{\log u} = \alpha - \beta v`, :math:`\dot{\log v} = \delta u - \gamma` keep the
  populations positive and make the error relative, with step 0.025.

Step sizes: over 20,000 prior draws the solution differs from RK4 at an 8x smaller step by at
most 1.7e-4 in :math:`I/N` (99.9 % quantile 5e-5; the binomial noise of :math:`I/N` is
:math:`\sqrt{p(1-p)/1000}`, 3e-3 at :math:`p = 0.01`) and by at most 0.033 in :math:`\log u,
\log v` (99.9 %: 1.9e-3, 99 %: 1.1e-4) against the noise's 0.1; ``tests/test_benchmark_tasks.py``
checks this. Both solve in float64 and return the parameters' dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import Tensor

from .base import Task, params

__all__ = [
    "LOTKA_VOLTERRA",
    "LV_STEP",
    "SIR",
    "SIR_STEP",
    "lotka_volterra_log_likelihood",
    "lotka_volterra_simulator",
    "lotka_volterra_solution",
    "rk4",
    "sir_log_likelihood",
    "sir_simulator",
    "sir_solution",
]

NUM_SAVES = 10
SIR_N, SIR_COUNT, SIR_SAVE_EVERY, SIR_STEP = 1e6, 1000, 17.0, 0.25
LV_START, LV_SAVE_EVERY, LV_STEP, LV_NOISE = (30.0, 1.0), 2.1, 0.025, 0.1
LV_CLAMP = (math.log(1e-10), math.log(1e4))


def rk4(rhs: Callable[[Tensor], Tensor], y0: Tensor, step: float, steps_per_save: int, num_saves: int) -> Tensor:
    r"""Classical Runge-Kutta: :math:`y_{n+1} = y_n + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)`.

    :returns: ``[..., num_saves, state]``: ``y0`` and the state after every ``steps_per_save`` steps.
    """
    y, saves = y0, [y0]
    for n in range(1, steps_per_save * (num_saves - 1) + 1):
        k1 = rhs(y)
        k2 = rhs(y + 0.5 * step * k1)
        k3 = rhs(y + 0.5 * step * k2)
        k4 = rhs(y + step * k3)
        y = y + (step / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        if n % steps_per_save == 0:
            saves.append(y)
    return torch.stack(saves, dim=-2)


def sir_solution(theta: Tensor, step: float = SIR_STEP) -> Tensor:
    """``I(t_k) / N`` ``[..., 10]`` (float64) for ``theta = (beta, gamma)[..., 2]``."""
    beta, gamma = theta.double().unbind(-1)

    def rhs(y: Tensor) -> Tensor:
        s, i = y.unbind(-1)
        infection = beta * s * i
        return torch.stack([-infection, infection - gamma * i], dim=-1)

    y0 = torch.tensor([1 - 1 / SIR_N, 1 / SIR_N], dtype=torch.float64).expand(theta.shape[:-1] + (2,))
    return rk4(rhs, y0, step, round(SIR_SAVE_EVERY / step), NUM_SAVES)[..., 1]


def sir_simulator(theta: Tensor) -> Tensor:
    """``(beta, gamma)[..., 2] -> x[..., 10]``: binomial counts out of 1000 of the infected fraction."""
    probs = sir_solution(theta).clamp(0.0, 1.0)
    return torch.binomial(torch.full_like(probs, SIR_COUNT), probs).to(theta.dtype)


def sir_log_likelihood(theta: Tensor, x_o: Tensor) -> Tensor:
    r""":math:`\sum_k \log \mathrm{Binomial}(x_k; 1000, I(t_k)/N)` (float64) for ``theta[..., 2]``."""
    p = sir_solution(theta).clamp(0.0, 1.0)
    x = x_o.double()
    log_choose = math.lgamma(SIR_COUNT + 1) - torch.lgamma(x + 1) - torch.lgamma(SIR_COUNT - x + 1)
    return (log_choose + torch.xlogy(x, p) + torch.xlogy(SIR_COUNT - x, 1 - p)).sum(-1)


def lotka_volterra_solution(theta: Tensor, step: float = LV_STEP) -> Tensor:
    """``(log u(t_k), log v(t_k))`` as ``[..., 20]`` (float64), u first, for ``theta[..., 4]``."""
    alpha, beta, gamma, delta = theta.double().unbind(-1)

    def rhs(y: Tensor) -> Tensor:
        log_u, log_v = y.unbind(-1)
        return torch.stack([alpha - beta * log_v.exp(), delta * log_u.exp() - gamma], dim=-1)

    y0 = torch.tensor([math.log(LV_START[0]), math.log(LV_START[1])], dtype=torch.float64)
    y0 = y0.expand(theta.shape[:-1] + (2,))
    solution = rk4(rhs, y0, step, round(LV_SAVE_EVERY / step), NUM_SAVES)
    return solution.transpose(-1, -2).flatten(-2)


def lotka_volterra_simulator(theta: Tensor) -> Tensor:
    """``theta[..., 4] -> x[..., 20]``: prey then predator, log-normal noise 0.1 around the clamped solution."""
    loc = lotka_volterra_solution(theta).clamp(*LV_CLAMP)
    return (loc + LV_NOISE * torch.randn_like(loc)).exp().to(theta.dtype)


def lotka_volterra_log_likelihood(theta: Tensor, x_o: Tensor) -> Tensor:
    r""":math:`\sum_k \log \mathrm{LogNormal}(x_k; \mathrm{clamp}(\log y_k), 0.1)` (float64)."""
    loc = lotka_volterra_solution(theta).clamp(*LV_CLAMP)
    log_x = x_o.double().log()
    z = (log_x - loc) / LV_NOISE
    return (-0.5 * z**2 - math.log(LV_NOISE * math.sqrt(2 * math.pi)) - log_x).sum(-1)


def _ode_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    from pyro_lfi.benchmark.reference_store import reference_samples
    from pyro_lfi.benchmark.tractable import POSTERIORS

    return reference_samples(POSTERIORS[task.name], task, x_o.double(), num_samples, seed, index)


SIR = Task(
    name="sir",
    dim_theta=2,
    dim_x=NUM_SAVES,
    prior=dist.LogNormal(torch.tensor([math.log(0.4), math.log(0.125)]), torch.tensor([0.5, 0.2])).to_event(1),
    simulator=sir_simulator,
    true_parameters=params(  # draw_true_parameters("sir", prior)
        (1.22137, 0.12497),
        (0.30924, 0.118075),
        (0.550095, 0.123378),
        (0.257399, 0.154494),
        (0.179082, 0.128388),
        (0.217746, 0.15022),
        (0.218396, 0.101078),
        (0.249518, 0.0979577),
        (0.567018, 0.10753),
        (0.464772, 0.0926589),
    ),
    reference_sampler=_ode_reference,
)

LOTKA_VOLTERRA = Task(
    name="lotka_volterra",
    dim_theta=4,
    dim_x=2 * NUM_SAVES,
    prior=dist.LogNormal(torch.tensor([-0.125, -3.0, -0.125, -3.0]), 0.5).to_event(1),
    simulator=lotka_volterra_simulator,
    true_parameters=params(  # draw_true_parameters("lotka_volterra", prior)
        (1.24926, 0.0430686, 1.99979, 0.0284062),
        (0.725353, 0.0870441, 1.2109, 0.0748439),
        (1.87316, 0.129622, 1.22931, 0.0358407),
        (0.80842, 0.0363166, 1.35435, 0.0686912),
        (0.610443, 0.0682403, 0.499925, 0.0362128),
        (0.784264, 0.0751143, 0.962068, 0.155211),
        (0.49441, 0.120283, 0.997494, 0.0953313),
        (1.71138, 0.0524879, 0.678456, 0.0315786),
        (0.861331, 0.129849, 0.805539, 0.0612244),
        (0.424935, 0.0551874, 0.828115, 0.0314523),
    ),
    reference_sampler=_ode_reference,
)
