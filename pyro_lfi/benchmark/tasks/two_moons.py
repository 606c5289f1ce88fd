r"""Two moons (sbibm ``two_moons``; Greenberg et al. 2019, Lueckmann et al. 2021, appendix T.2).

:math:`\theta \sim U(-1, 1)^2`, :math:`a \sim U(-\pi/2, \pi/2)`, :math:`r \sim N(0.1, 0.01^2)`,
:math:`x = (r\cos a + 0.25, r \sin a) + (-|\theta_1 + \theta_2| / \sqrt2, (\theta_2 - \theta_1) / \sqrt2)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Task, generator, params, rejection_sample, uniform_box

__all__ = ["TWO_MOONS", "two_moons_simulator"]


def _moon_noise(shape: torch.Size, dtype: torch.dtype, gen: torch.Generator | None) -> Tensor:
    """The simulator's offset ``p = (r cos a + 0.25, r sin a)``, shape ``shape + (2,)``."""
    a = (torch.rand(shape, generator=gen, dtype=dtype) - 0.5) * math.pi
    r = 0.1 + 0.01 * torch.randn(shape, generator=gen, dtype=dtype)
    return torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], dim=-1)


def two_moons_simulator(theta: Tensor) -> Tensor:
    """Two-moons simulator, ``theta[..., 2] -> x[..., 2]``."""
    p = _moon_noise(theta.shape[:-1], theta.dtype, None)
    t1, t2 = theta[..., 0], theta[..., 1]
    z = torch.stack([-(t1 + t2).abs(), t2 - t1], dim=-1) / math.sqrt(2.0)
    return p + z


def _two_moons_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""Exact posterior by inverting the simulator.

    Write :math:`u = \theta_1 + \theta_2`, :math:`v = \theta_2 - \theta_1`; then
    :math:`x = p + (-|u|, v)/\sqrt2` with :math:`p` independent of :math:`\theta`. The map
    :math:`\theta \mapsto (|u|, v)` is linear with constant Jacobian on each half-plane
    :math:`\pm u > 0`, so :math:`p(\theta \mid x_o) \propto p_p(x_o - (-|u|, v)/\sqrt2)\,
    1_{[-1,1]^2}(\theta)`. Drawing :math:`p \sim p_p`, setting :math:`|u| = -\sqrt2
    (x_{o,1} - p_1)` (discarded if negative), :math:`v = \sqrt2 (x_{o,2} - p_2)`, a fair
    random sign for :math:`u`, and rejecting outside the prior box samples it exactly.
    """
    gen = generator(seed)

    def accepted(batch: int) -> Tensor:
        q = x_o - _moon_noise(torch.Size([batch]), x_o.dtype, gen)
        abs_u = -math.sqrt(2.0) * q[:, 0]
        v = math.sqrt(2.0) * q[:, 1]
        sign = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
        u = sign * abs_u
        theta = torch.stack([(u - v) / 2, (u + v) / 2], dim=-1)
        return theta[(abs_u >= 0) & (theta.abs() <= 1).all(dim=-1)]

    return rejection_sample(accepted, num_samples, f"two_moons reference: x_o={x_o.tolist()}", 1000)


TWO_MOONS = Task(
    name="two_moons",
    dim_theta=2,
    dim_x=2,
    prior=uniform_box(-1.0, 1.0, 2),
    simulator=two_moons_simulator,
    true_parameters=params((0.2, 0.3), (-0.5, 0.4), (0.6, -0.1), (-0.3, -0.7), (0.0, 0.5)),
    reference_sampler=_two_moons_reference,
)
