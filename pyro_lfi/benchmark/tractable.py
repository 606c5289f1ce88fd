r"""The tractable posteriors behind the NUTS references of ``bernoulli_glm(_raw)``, ``sir`` and
``lotka_volterra``: :math:`\log p(z \mid x_o) = \log p(z) + \log p(x_o \mid \theta(z)) + C` in
unconstrained coordinates :math:`z` (:math:`\theta = z` for the GLM, :math:`\theta = e^z` for the
log-normal priors of the ODE tasks, whose prior on :math:`z` is then normal).

Each is written twice: batched in torch (importance sampling, starting points, tests) and at
one point with its gradient (NUTS): torch's autograd for the GLM (a 100 x 10 matrix product),
Python floats with forward sensitivities for the ODEs (:mod:`pyro_lfi.benchmark.ode_gradients`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyro.distributions as dist
import torch
from torch import Tensor

from pyro_lfi.benchmark.ode_gradients import lotka_volterra_value_and_grad, sir_value_and_grad
from pyro_lfi.benchmark.tasks import (
    get_task,
    glm_log_likelihood,
    glm_prior_precision,
    lotka_volterra_log_likelihood,
    sir_log_likelihood,
)

__all__ = ["POSTERIORS", "TractablePosterior"]

PointFn = Callable[[Sequence[float], Sequence[float]], tuple[float, list[float]]]


@dataclass(frozen=True)
class TractablePosterior:
    """A posterior known up to its normalizing constant, in unconstrained coordinates ``z``.

    :param name: the cache's name for it (files ``<name>_<index>.npz``).
    :param prior: ``p(z)``, float64, ``event_shape == (dim,)``.
    :param log_likelihood: batched ``(theta[..., dim], statistic) -> log p(x_o | theta)`` (float64).
    :param to_theta: ``z -> theta``.
    :param likelihood_point: ``(z, statistic) -> (log p(x_o | theta(z)), d/dz)`` at one point, or
        ``None``: torch's autograd of ``log_likelihood``.
    """

    name: str
    prior: dist.Distribution
    log_likelihood: Callable[[Tensor, Tensor], Tensor]
    to_theta: Callable[[Tensor], Tensor]
    likelihood_point: PointFn | None = None

    @property
    def dim(self) -> int:
        """Length of ``z`` (and ``theta``)."""
        return self.prior.event_shape[0]

    def log_density(self, z: Tensor, statistic: Tensor) -> Tensor:
        r"""Batched :math:`\log p(z) + \log p(x_o \mid \theta(z))` (float64)."""
        z = z.double()
        return self.prior.log_prob(z) + self.log_likelihood(self.to_theta(z), statistic)

    def value_and_grad(self, z: np.ndarray, statistic: Tensor) -> tuple[float, np.ndarray]:
        """The log density and its gradient at one point ``z[dim]`` (float64)."""
        point = torch.tensor(np.asarray(z, dtype=np.float64), requires_grad=True)
        with torch.enable_grad():  # also inside an autograd.Function's forward
            log_prior = self.prior.log_prob(point)
            if self.likelihood_point is None:
                value = log_prior + self.log_likelihood(self.to_theta(point), statistic)
                (grad,) = torch.autograd.grad(value, point)
                return float(value.detach()), grad.numpy()
            (prior_grad,) = torch.autograd.grad(log_prior, point)
        like, like_grad = self.likelihood_point(point.detach().tolist(), statistic.double().tolist())
        if not math.isfinite(like):
            return -math.inf, np.zeros(self.dim)
        return float(log_prior.detach()) + like, prior_grad.numpy() + np.asarray(like_grad)


def _identity(z: Tensor) -> Tensor:
    return z


def _glm() -> TractablePosterior:
    precision = glm_prior_precision()
    prior = dist.MultivariateNormal(torch.zeros(precision.shape[0], dtype=torch.float64), precision_matrix=precision)
    return TractablePosterior("bernoulli_glm", prior, glm_log_likelihood, _identity)


def _log_prior(task: str) -> dist.Distribution:
    """The prior of ``z = log theta`` under the task's ``theta ~ LogNormal(loc, scale)``: ``Normal(loc, scale)``."""
    log_normal = get_task(task).prior.base_dist
    return dist.Normal(log_normal.loc.double(), log_normal.scale.double()).to_event(1)


POSTERIORS: dict[str, TractablePosterior] = {
    p.name: p
    for p in (
        _glm(),
        TractablePosterior(
            "sir", _log_prior("sir"), sir_log_likelihood, torch.exp, sir_value_and_grad
        ),
        TractablePosterior(
            "lotka_volterra", _log_prior("lotka_volterra"), lotka_volterra_log_likelihood, torch.exp,
            lotka_volterra_value_and_grad,
        ),
    )
}
