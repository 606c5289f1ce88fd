r"""Benchmark tasks with known reference posteriors (definitions follow sbibm).

Each :class:`Task` bundles a prior over a flat parameter vector, a batched black-box
simulator, fixed observations made from fixed "true" parameters, and a sampler of the
reference posterior :math:`p(\theta \mid x_o)`.

* ``two_moons``: :math:`\theta \sim U(-1, 1)^2`, :math:`a \sim U(-\pi/2, \pi/2)`,
  :math:`r \sim N(0.1, 0.01^2)`, :math:`x = (r\cos a + 0.25, r \sin a)
  + (-|\theta_1 + \theta_2| / \sqrt2, (\theta_2 - \theta_1) / \sqrt2)`.
* ``gaussian_linear``: :math:`\theta \sim N(0, 0.1 I_{10})`,
  :math:`x \sim N(\theta, 0.1 I_{10})`.
* ``slcp``: :math:`\theta \sim U(-3, 3)^5`; four iid draws of
  :math:`N(m, S)` flattened to 8 numbers, :math:`m = (\theta_1, \theta_2)`,
  :math:`s_1 = \theta_3^2`, :math:`s_2 = \theta_4^2`, :math:`\rho = \tanh\theta_5`,
  :math:`S = \begin{pmatrix} s_1^2 & \rho s_1 s_2 \\ \rho s_1 s_2 & s_2^2\end{pmatrix}`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ..seeding import seeded

__all__ = [
    "TASKS",
    "Task",
    "gaussian_linear_simulator",
    "get_task",
    "slcp_simulator",
    "two_moons_simulator",
]

#: ``(task, x_o, num_samples, seed, index) -> samples``; ``index``: ``x_o`` is the fixed
#: ``observation(index)`` (:meth:`Task.reference_posterior_at`), or ``None`` for any other ``x_o``.
ReferenceFn = Callable[["Task", Tensor, int, int, "int | None"], Tensor]


@dataclass(frozen=True)
class Task:
    """A simulation-based inference benchmark problem.

    :param name: registry name.
    :param dim_theta: length of the flat parameter vector.
    :param dim_x: length of one simulator output.
    :param prior: distribution with ``event_shape == (dim_theta,)``.
    :param simulator: batched ``theta[..., dim_theta] -> x[..., dim_x]``; random only
        through torch's global RNG.
    :param true_parameters: the parameters behind ``observation(1)``, ``observation(2)``, ...
    :param reference_sampler: ``(task, x_o, num_samples, seed, index) -> samples`` (:data:`ReferenceFn`).
    """

    name: str
    dim_theta: int
    dim_x: int
    prior: dist.Distribution
    simulator: Callable[[Tensor], Tensor]
    true_parameters: tuple[tuple[float, ...], ...] = field(repr=False)
    reference_sampler: ReferenceFn = field(repr=False)

    @property
    def num_observations(self) -> int:
        """Number of fixed observations (indices ``1 .. num_observations``)."""
        return len(self.true_parameters)

    def model(self, x: Tensor | None = None) -> Tensor:
        """Pyro model ``theta ~ prior``, ``x ~ Simulator(simulator, theta)``."""
        from pyro_lfi.model.simulator import Simulator

        theta = pyro.sample("theta", self.prior)
        site = Simulator(self.simulator, theta, event_shape=(self.dim_x,))
        return pyro.sample("x", site, obs=x)

    def true_parameter(self, index: int = 1) -> Tensor:
        """The parameter ``theta[dim_theta]`` that generated ``observation(index)``."""
        if not 1 <= index <= self.num_observations:
            raise IndexError(f"task {self.name!r} has observations 1..{self.num_observations}, got index {index}")
        return torch.tensor(self.true_parameters[index - 1])

    def observation(self, index: int = 1) -> Tensor:
        """Fixed observation ``x_o[dim_x]``: one simulation at ``true_parameter(index)``.

        Simulated in float32, seeded from the task name and index inside a forked RNG, so
        the result does not depend on (and does not change) torch's global RNG state or
        default dtype (it is returned in the default dtype). Its last bits may differ between
        CPUs (vectorized math kernels): compare it with others within rounding, never exactly.
        """
        theta = self.true_parameter(index).float()
        with seeded(self.observation_seed(index)):
            x = self.simulator(theta)
        return x.detach().to(torch.get_default_dtype())

    def observation_seed(self, index: int = 1) -> int:
        """The seed :meth:`observation` simulates ``observation(index)`` with."""
        self.true_parameter(index)  # checks the index
        return zlib.crc32(f"{self.name}/{index}".encode())

    def reference_posterior(self, x_o: Tensor, num_samples: int = 10_000, seed: int = 0) -> Tensor:
        """Samples ``[num_samples, dim_theta]`` of the reference posterior given any ``x_o``.

        Deterministic given ``seed`` and independent of torch's global RNG state. For a fixed
        observation prefer :meth:`reference_posterior_at`, which finds cached references by index.
        """
        x_o = torch.as_tensor(x_o, dtype=torch.get_default_dtype())
        if x_o.shape != (self.dim_x,):
            raise ValueError(f"x_o must have shape ({self.dim_x},) for task {self.name!r}, got {tuple(x_o.shape)}")
        return self._reference(x_o, num_samples, seed, None)

    def reference_posterior_at(self, index: int = 1, num_samples: int = 10_000, seed: int = 0) -> Tensor:
        """Samples ``[num_samples, dim_theta]`` of the reference posterior given ``observation(index)``.

        Cached references are found by ``index`` and what generated the observation, never by
        its floats, which differ in the last bits between CPUs. Deterministic given ``seed``.
        """
        return self._reference(self.observation(index), num_samples, seed, index)

    def _reference(self, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        with seeded(seed):
            return self.reference_sampler(self, x_o, num_samples, seed, index)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- two moons ------------------------------------------------------------------------------


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
    gen = _generator(seed)
    out: list[Tensor] = []
    have = 0
    batch = max(2 * num_samples, 1000)
    for _ in range(1000):
        q = x_o - _moon_noise(torch.Size([batch]), x_o.dtype, gen)
        abs_u = -math.sqrt(2.0) * q[:, 0]
        v = math.sqrt(2.0) * q[:, 1]
        sign = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
        u = sign * abs_u
        theta = torch.stack([(u - v) / 2, (u + v) / 2], dim=-1)
        keep = (abs_u >= 0) & (theta.abs() <= 1).all(dim=-1)
        out.append(theta[keep])
        have += int(keep.sum())
        if have >= num_samples:
            return torch.cat(out)[:num_samples]
    raise RuntimeError(f"two_moons reference: x_o={x_o.tolist()} is (nearly) impossible")


# -- Gaussian linear ------------------------------------------------------------------------

GAUSSIAN_LINEAR_VAR = 0.1  # prior and noise variance


def gaussian_linear_simulator(theta: Tensor) -> Tensor:
    """``x = theta + sqrt(0.1) * eps``, ``eps ~ N(0, I)``."""
    return theta + math.sqrt(GAUSSIAN_LINEAR_VAR) * torch.randn_like(theta)


def _gaussian_linear_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    r"""Exact conjugate posterior: with prior :math:`N(0, \sigma^2 I)` and noise
    :math:`N(0, \sigma^2 I)`, :math:`\theta \mid x_o \sim N(x_o / 2, \sigma^2/2\, I)`."""
    mean, std = x_o / 2, math.sqrt(GAUSSIAN_LINEAR_VAR / 2)
    eps = torch.randn(num_samples, task.dim_theta, generator=_generator(seed), dtype=x_o.dtype)
    return mean + std * eps


# -- SLCP -----------------------------------------------------------------------------------


def slcp_scale_tril(theta: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean ``[..., 2]`` and Cholesky factor ``[..., 2, 2]`` of SLCP's Gaussian:
    :math:`L = \begin{pmatrix} s_1 & 0 \\ \rho s_2 & s_2\sqrt{1-\rho^2}\end{pmatrix}`,
    so :math:`L L^\top = S`."""
    s1, s2 = theta[..., 2] ** 2, theta[..., 3] ** 2
    rho = torch.tanh(theta[..., 4])
    zero = torch.zeros_like(s1)
    row1 = torch.stack([s1, zero], dim=-1)
    row2 = torch.stack([rho * s2, s2 * torch.sqrt(1 - rho**2)], dim=-1)
    return theta[..., :2], torch.stack([row1, row2], dim=-2)


def slcp_simulator(theta: Tensor) -> Tensor:
    """SLCP simulator, ``theta[..., 5] -> x[..., 8]`` (four 2-D points, flattened)."""
    loc, tril = slcp_scale_tril(theta)
    eps = torch.randn(theta.shape[:-1] + (4, 2), dtype=theta.dtype)
    points = loc.unsqueeze(-2) + (tril.unsqueeze(-3) @ eps.unsqueeze(-1)).squeeze(-1)
    return points.flatten(-2)


def _slcp_reference(task: Task, x_o: Tensor, num_samples: int, seed: int, index: int | None) -> Tensor:
    from pyro_lfi.benchmark.references import slcp_reference, slcp_reference_at

    if index is None:
        return slcp_reference(x_o, num_samples, seed)
    return slcp_reference_at(index, num_samples, seed)


# -- registry -------------------------------------------------------------------------------


def _box(low: float, high: float, dim: int) -> dist.Distribution:
    return dist.Uniform(torch.full((dim,), low), torch.full((dim,), high)).to_event(1)


def _params(*rows: Sequence[float]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in rows)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="two_moons",
            dim_theta=2,
            dim_x=2,
            prior=_box(-1.0, 1.0, 2),
            simulator=two_moons_simulator,
            true_parameters=_params((0.2, 0.3), (-0.5, 0.4), (0.6, -0.1), (-0.3, -0.7), (0.0, 0.5)),
            reference_sampler=_two_moons_reference,
        ),
        Task(
            name="gaussian_linear",
            dim_theta=10,
            dim_x=10,
            prior=dist.Normal(torch.zeros(10), math.sqrt(GAUSSIAN_LINEAR_VAR)).to_event(1),
            simulator=gaussian_linear_simulator,
            true_parameters=_params(
                (0.1, -0.2, 0.3, 0.0, -0.4, 0.25, -0.1, 0.35, -0.3, 0.05),
                (-0.3, 0.4, 0.1, -0.15, 0.2, -0.5, 0.3, 0.0, 0.45, -0.2),
                (0.5, 0.1, -0.35, 0.2, 0.0, -0.1, -0.4, 0.15, 0.3, 0.4),
                (-0.05, -0.45, 0.2, 0.4, -0.25, 0.1, 0.5, -0.3, 0.0, -0.35),
                (0.3, 0.3, 0.3, -0.3, -0.3, -0.3, 0.1, -0.1, 0.2, -0.2),
            ),
            reference_sampler=_gaussian_linear_reference,
        ),
        Task(
            name="slcp",
            dim_theta=5,
            dim_x=8,
            prior=_box(-3.0, 3.0, 5),
            simulator=slcp_simulator,
            true_parameters=_params(
                (0.7, -2.0, -1.0, -0.9, 0.6),
                (-1.5, 1.0, 0.8, 1.2, -0.5),
                (2.0, 0.5, -1.3, 0.7, 1.0),
                (0.0, -0.8, 1.1, -1.1, -1.2),
                (-2.2, 2.1, 0.6, 0.9, 0.2),
            ),
            reference_sampler=_slcp_reference,
        ),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available tasks: {', '.join(sorted(TASKS))}") from None
