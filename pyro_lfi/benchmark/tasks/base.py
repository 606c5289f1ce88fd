r"""The :class:`Task` record every benchmark task is, and what the task families share."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ...seeding import seeded

__all__ = ["ReferenceFn", "Task", "draw_true_parameters", "generator", "params", "rejection_sample", "uniform_box"]

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
    :param seed_name: the name observation seeds are derived from (default: ``name``). Two tasks
        that share it and their true parameters draw the same random numbers for an observation:
        ``slcp_distractors`` holds ``slcp``'s observations, ``bernoulli_glm`` summarizes
        ``bernoulli_glm_raw``'s spike trains.
    """

    name: str
    dim_theta: int
    dim_x: int
    prior: dist.Distribution
    simulator: Callable[[Tensor], Tensor]
    true_parameters: tuple[tuple[float, ...], ...] = field(repr=False)
    reference_sampler: ReferenceFn = field(repr=False)
    seed_name: str | None = field(default=None, repr=False)

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

        Simulated in float32, seeded from the task's ``seed_name`` and index inside a forked RNG,
        so the result does not depend on (and does not change) torch's global RNG state or
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
        return zlib.crc32(f"{self.seed_name or self.name}/{index}".encode())

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


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (for draws that must not touch the global RNG)."""
    return torch.Generator().manual_seed(seed)


def rejection_sample(accepted: Callable[[int], Tensor], num_samples: int, what: str, tries: int) -> Tensor:
    """``num_samples`` rows from batches of ``accepted(batch)`` (the accepted rows of one batch of
    proposals), ``batch = max(2 num_samples, 1000)``; a RuntimeError naming ``what`` if ``tries``
    batches do not give enough."""
    out: list[Tensor] = []
    have, batch = 0, max(2 * num_samples, 1000)
    for _ in range(tries):
        out.append(accepted(batch))
        have += out[-1].shape[0]
        if have >= num_samples:
            return torch.cat(out)[:num_samples]
    raise RuntimeError(f"{what} is (nearly) impossible")


def uniform_box(low: float, high: float, dim: int) -> dist.Distribution:
    """:math:`U(\\mathrm{low}, \\mathrm{high})^{\\mathrm{dim}}` as one event."""
    return dist.Uniform(torch.full((dim,), low), torch.full((dim,), high)).to_event(1)


def params(*rows: Sequence[float]) -> tuple[tuple[float, ...], ...]:
    """Rows of true parameters as a tuple of float tuples (hashable, exact in cache keys)."""
    return tuple(tuple(float(v) for v in row) for row in rows)


def draw_true_parameters(name: str, prior: dist.Distribution, num: int = 10) -> tuple[tuple[float, ...], ...]:
    """``num`` prior draws seeded by ``crc32(f"{name}/true_parameters")``, rounded to 6 significant digits.

    How the fixed true parameters of the newer tasks were made; they are written in the source as
    literals, so that no machine's last bits ever change them (the reference cache's keys hold them).
    """
    with seeded(zlib.crc32(f"{name}/true_parameters".encode())):
        draws = prior.sample((num,)).double()
    return tuple(tuple(float(f"{v:.6g}") for v in row) for row in draws.tolist())
