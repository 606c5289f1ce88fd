r"""Gaussian tasks (sbibm ``gaussian_linear``, ``gaussian_linear_uniform``, ``gaussian_mixture``;
Lueckmann et al. 2021, appendix T.1, T.3, T.5). All three have exact reference posteriors.

* ``gaussian_linear``: :math:`\theta \sim N(0, 0.1 I_{10})`, :math:`x \sim N(\theta, 0.1 I_{10})`.
* ``gaussian_linear_uniform``: :math:`\theta \sim U(-1, 1)^{10}`, :math:`x \sim N(\theta, 0.1 I_{10})`.
* ``gaussian_mixture``: :math:`\theta \sim U(-10, 10)^2`,
  :math:`x \sim \tfrac12 N(\theta, I_2) + \tfrac12 N(\theta, 0.01 I_2)` (the component drawn per
  simulation; sbibm's simulator draws one for a whole batch).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor

from .base import Task, generator, params, rejection_sample, uniform_box

__all__ = [
    "GAUSSIAN_LINEAR",
    "GAUSSIAN_LINEAR_UNIFORM",
    "GAUSSIAN_LINEAR_VAR",
    "GAUSSIAN_MIXTURE",
    "MIXTURE_STDS",
    "gaussian_linear_simulator",
    "gaussian_mixture_simulator",
]

GAUSSIAN_LINEAR_VAR = 0.1  # prior and noise variance of gaussian_linear, noise variance of the uniform one
#: Standard deviations of the two equally weighted components of ``gaussian_mixture``.
MIXTURE_STDS = (1.0, 0.1)
MIXTURE_BOUND = 10.0


def gaussian_linear_simulator(theta: Tensor) -> Tensor:
    """``x = theta + sqrt(0.1) * eps``, ``eps ~ N(0, I)``."""
    return theta + math.sqrt(GAUSSIAN_LINEAR_VAR) * torch.randn_like(theta)


def _gaussian_linear_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""Exact conjugate posterior: with prior :math:`N(0, \sigma^2 I)` and noise
    :math:`N(0, \sigma^2 I)`, :math:`\theta \mid x_o \sim N(x_o / 2, \sigma^2/2\, I)`."""
    mean, std = x_o / 2, math.sqrt(GAUSSIAN_LINEAR_VAR / 2)
    eps = torch.randn(num_samples, task.dim_theta, generator=generator(seed), dtype=x_o.dtype)
    return mean + std * eps


def _uniform_linear_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""Exact posterior :math:`N(x_o, 0.1 I)` restricted to :math:`[-1, 1]^{10}`, by rejection.

    Prior and likelihood factorize over coordinates, so the posterior is a product of truncated
    normals :math:`N(x_{o,j}, 0.1)` on :math:`[-1, 1]`; each coordinate keeps the in-box draws of
    its own normal, in order (exact, and not slowed by the product of ten acceptance rates).
    """
    gen, std = generator(seed), math.sqrt(GAUSSIAN_LINEAR_VAR)
    columns: list[list[Tensor]] = [[] for _ in range(task.dim_theta)]
    counts = [0] * task.dim_theta
    for _ in range(10_000):
        draws = x_o + std * torch.randn(max(2 * num_samples, 1000), task.dim_theta, generator=gen, dtype=x_o.dtype)
        for j in range(task.dim_theta):
            kept = draws[:, j][draws[:, j].abs() <= 1]
            columns[j].append(kept)
            counts[j] += kept.shape[0]
        if min(counts) >= num_samples:
            return torch.stack([torch.cat(c)[:num_samples] for c in columns], dim=-1)
    raise RuntimeError(f"gaussian_linear_uniform reference: x_o={x_o.tolist()} is (nearly) impossible")


def gaussian_mixture_simulator(theta: Tensor) -> Tensor:
    r"""``x = theta + s * eps`` with ``s = 1`` or ``0.1`` at random (each 1/2), ``eps ~ N(0, I_2)``."""
    narrow = torch.rand(theta.shape[:-1] + (1,), dtype=theta.dtype) < 0.5
    scale = torch.where(narrow, MIXTURE_STDS[1], MIXTURE_STDS[0])
    return theta + scale * torch.randn_like(theta)


def _gaussian_mixture_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""Exact posterior by rejection: :math:`p(\theta \mid x_o) \propto (\tfrac12 N(x_o; \theta, I)
    + \tfrac12 N(x_o; \theta, 0.01 I))\, 1_{[-10, 10]^2}(\theta)`, which is the same mixture of
    normals in :math:`\theta` around :math:`x_o` (both components integrate to one), restricted to
    the box: draw a component, then :math:`\theta`, and keep it if it lies in the box."""
    gen = generator(seed)

    def accepted(batch: int) -> Tensor:
        narrow = torch.rand(batch, 1, generator=gen, dtype=x_o.dtype) < 0.5
        scale = torch.where(narrow, MIXTURE_STDS[1], MIXTURE_STDS[0])
        theta = x_o + scale * torch.randn(batch, task.dim_theta, generator=gen, dtype=x_o.dtype)
        return theta[(theta.abs() <= MIXTURE_BOUND).all(-1)]

    return rejection_sample(accepted, num_samples, f"gaussian_mixture reference: x_o={x_o.tolist()}", 10_000)


GAUSSIAN_LINEAR = Task(
    name="gaussian_linear",
    dim_theta=10,
    dim_x=10,
    prior=dist.Normal(torch.zeros(10), math.sqrt(GAUSSIAN_LINEAR_VAR)).to_event(1),
    simulator=gaussian_linear_simulator,
    true_parameters=params(
        (0.1, -0.2, 0.3, 0.0, -0.4, 0.25, -0.1, 0.35, -0.3, 0.05),
        (-0.3, 0.4, 0.1, -0.15, 0.2, -0.5, 0.3, 0.0, 0.45, -0.2),
        (0.5, 0.1, -0.35, 0.2, 0.0, -0.1, -0.4, 0.15, 0.3, 0.4),
        (-0.05, -0.45, 0.2, 0.4, -0.25, 0.1, 0.5, -0.3, 0.0, -0.35),
        (0.3, 0.3, 0.3, -0.3, -0.3, -0.3, 0.1, -0.1, 0.2, -0.2),
    ),
    reference_sampler=_gaussian_linear_reference,
)

GAUSSIAN_LINEAR_UNIFORM = Task(
    name="gaussian_linear_uniform",
    dim_theta=10,
    dim_x=10,
    prior=uniform_box(-1.0, 1.0, 10),
    simulator=gaussian_linear_simulator,
    true_parameters=params(  # draw_true_parameters("gaussian_linear_uniform", prior)
        (-0.880569, 0.693535, 0.865326, 0.0700771, 0.522736, 0.11129, 0.939845, -0.121885, -0.450055, 0.783654),
        (0.338587, -0.111193, -0.564671, -0.646592, -0.632889, 0.129884, -0.0377481, 0.284237, 0.60554, 0.186641),
        (-0.743921, 0.0987192, 0.261293, -0.668363, 0.849952, -0.543532, 0.312082, -0.67853, -0.747304, -0.476792),
        (-0.774035, -0.622172, 0.588594, 0.39574, 0.252636, -0.943944, 0.840904, 0.249507, 0.58477, -0.228292),
        (-0.32337, -0.698926, -0.165377, 0.84853, 0.65688, -0.505541, 0.793278, 0.124273, 0.396006, 0.981858),
        (-0.772636, -0.831806, -0.843343, -0.105013, -0.714926, 0.236007, 0.531121, -0.722909, 0.979145, -0.178973),
        (0.297566, 0.104082, -0.366025, -0.438033, 0.104753, 0.547294, -0.745066, -0.557581, 0.868198, 0.011745),
        (-0.185059, -0.324736, -0.247704, 0.529852, -0.816976, 0.699504, -0.79823, 0.359336, 0.289824, -0.912405),
        (0.0320793, -0.181948, -0.14143, -0.144382, 0.80827, 0.148039, -0.210271, -0.682844, 0.495228, 0.0573281),
        (-0.390661, 0.0356226, 0.73723, -0.793979, -0.742128, -0.811133, 0.649784, -0.389229, -0.485637, -0.620752),
    ),
    reference_sampler=_uniform_linear_reference,
)

GAUSSIAN_MIXTURE = Task(
    name="gaussian_mixture",
    dim_theta=2,
    dim_x=2,
    prior=uniform_box(-MIXTURE_BOUND, MIXTURE_BOUND, 2),
    simulator=gaussian_mixture_simulator,
    true_parameters=params(  # draw_true_parameters("gaussian_mixture", prior)
        (9.78676, -3.05945),
        (8.90812, -6.8607),
        (-0.862528, 1.95404),
        (-8.61513, -1.15295),
        (-8.95399, -4.4265),
        (-0.666853, 5.37523),
        (-5.90516, -1.85042),
        (4.42768, -4.8407),
        (-1.72183, -5.77845),
        (9.39566, 1.55478),
    ),
    reference_sampler=_gaussian_mixture_reference,
)
