r"""Log-likelihoods of the ODE tasks and their gradients at one point, in plain Python floats.

NUTS needs :math:`\nabla_z \log p(x_o \mid \theta(z))` at one point per leapfrog step. Torch's
autograd through the tasks' batched RK4 (:mod:`pyro_lfi.benchmark.tasks.ode`) costs ~0.3-0.6 s
there (hundreds of steps of tiny tensor operations, each a few microseconds of dispatch), while
the same RK4 on Python floats with the forward sensitivity equations
:math:`\dot S = J_f S + \partial f / \partial z`, :math:`S = \partial y / \partial z`, integrated
alongside the state by the same RK4 steps, takes ~5-10 ms. It is the same discretization as the
simulator's (same step, same stages), in float64, so the value is the tasks' batched
log-likelihood to rounding and the gradient is its exact derivative (both checked by
``tests/test_benchmark_tasks.py`` against torch).

Parameters are unconstrained :math:`z = \log\theta`. An overflowing solution gives
:math:`-\infty` with a zero gradient (NUTS then treats the step as divergent).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pyro_lfi.benchmark.tasks.ode import (
    LV_CLAMP,
    LV_NOISE,
    LV_SAVE_EVERY,
    LV_START,
    LV_STEP,
    NUM_SAVES,
    SIR_COUNT,
    SIR_N,
    SIR_SAVE_EVERY,
    SIR_STEP,
)

__all__ = ["lotka_volterra_value_and_grad", "rk4_floats", "sir_value_and_grad"]

Derivative = Callable[[list[float]], list[float]]


def rk4_floats(deriv: Derivative, y0: list[float], step: float, steps_per_save: int) -> list[list[float]]:
    """RK4 on a list of floats; returns the state at the :data:`NUM_SAVES` save times (``y0`` first)."""
    y, saves, half = list(y0), [list(y0)], 0.5 * step
    for n in range(1, steps_per_save * (NUM_SAVES - 1) + 1):
        k1 = deriv(y)
        k2 = deriv([a + half * b for a, b in zip(y, k1)])
        k3 = deriv([a + half * b for a, b in zip(y, k2)])
        k4 = deriv([a + step * b for a, b in zip(y, k3)])
        sixth = step / 6
        y = [a + sixth * (b + 2 * c + 2 * d + e) for a, b, c, d, e in zip(y, k1, k2, k3, k4)]
        if n % steps_per_save == 0:
            saves.append(y)
    return saves


def _sir_deriv(beta: float, gamma: float) -> Derivative:
    """State ``(s, i, ds/dz1, ds/dz2, di/dz1, di/dz2)``, ``z = (log beta, log gamma)``."""

    def deriv(y: list[float]) -> list[float]:
        s, i, s1, s2, i1, i2 = y
        infection, bi, bs = beta * s * i, beta * i, beta * s
        growth = bs - gamma
        return [
            -infection,
            infection - gamma * i,
            -bi * s1 - bs * i1 - infection,
            -bi * s2 - bs * i2,
            bi * s1 + growth * i1 + infection,
            bi * s2 + growth * i2 - gamma * i,
        ]

    return deriv


def sir_value_and_grad(z: Sequence[float], x_o: Sequence[float]) -> tuple[float, list[float]]:
    r""":math:`\log p(x_o \mid \theta = e^z)` and its gradient in :math:`z` for ``sir``."""
    beta, gamma = math.exp(z[0]), math.exp(z[1])
    y0 = [1 - 1 / SIR_N, 1 / SIR_N, 0.0, 0.0, 0.0, 0.0]
    try:
        saves = rk4_floats(_sir_deriv(beta, gamma), y0, SIR_STEP, round(SIR_SAVE_EVERY / SIR_STEP))
    except OverflowError:
        return -math.inf, [0.0, 0.0]
    value, grad = 0.0, [0.0, 0.0]
    n = SIR_COUNT
    for (_, i, _, _, i1, i2), x in zip(saves, x_o):
        p = min(max(i, 0.0), 1.0)
        value += math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
        if (x > 0 and p <= 0.0) or (x < n and p >= 1.0) or not math.isfinite(i):
            return -math.inf, [0.0, 0.0]
        value += (x * math.log(p) if x > 0 else 0.0) + ((n - x) * math.log1p(-p) if x < n else 0.0)
        if 0.0 < i < 1.0:
            slope = x / p - (n - x) / (1 - p)
            grad[0] += slope * i1
            grad[1] += slope * i2
    return value, grad


def _lv_deriv(alpha: float, beta: float, gamma: float, delta: float) -> Derivative:
    """State ``(log u, log v, d log u / dz[4], d log v / dz[4])``, ``z = log(alpha, beta, gamma, delta)``."""

    def deriv(y: list[float]) -> list[float]:
        bv, du = beta * math.exp(y[1]), delta * math.exp(y[0])
        su, sv = y[2:6], y[6:10]
        return [
            alpha - bv,
            du - gamma,
            -bv * sv[0] + alpha,
            -bv * sv[1] - bv,
            -bv * sv[2],
            -bv * sv[3],
            du * su[0],
            du * su[1],
            du * su[2] - gamma,
            du * su[3] + du,
        ]

    return deriv


def lotka_volterra_value_and_grad(z: Sequence[float], x_o: Sequence[float]) -> tuple[float, list[float]]:
    r""":math:`\log p(x_o \mid \theta = e^z)` and its gradient in :math:`z` for ``lotka_volterra``
    (``x_o``: 10 prey then 10 predator values)."""
    rates = [math.exp(v) for v in z]
    y0 = [math.log(LV_START[0]), math.log(LV_START[1])] + [0.0] * 8
    try:
        saves = rk4_floats(_lv_deriv(*rates), y0, LV_STEP, round(LV_SAVE_EVERY / LV_STEP))
    except OverflowError:
        return -math.inf, [0.0] * 4
    value, grad = 0.0, [0.0] * 4
    const = math.log(LV_NOISE * math.sqrt(2 * math.pi))
    for k, y in enumerate(saves):
        for species in (0, 1):
            log_x = math.log(x_o[species * NUM_SAVES + k])
            level = y[species]
            if not math.isfinite(level):
                return -math.inf, [0.0] * 4
            mean = min(max(level, LV_CLAMP[0]), LV_CLAMP[1])
            resid = (log_x - mean) / LV_NOISE
            value += -0.5 * resid * resid - const - log_x
            if LV_CLAMP[0] < level < LV_CLAMP[1]:
                sens = y[2 + 4 * species : 6 + 4 * species]
                for j in range(4):
                    grad[j] += resid / LV_NOISE * sens[j]
    return value, grad
