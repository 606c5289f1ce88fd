r"""High-probability paths between two parameter sets (Deistler, Macke & Gonçalves 2022).

In the standardized unconstrained space :math:`s = (z - m) / \sigma` (:math:`m, \sigma`: the
posterior mean and standard deviation of :math:`z`), a path from :math:`s_a` to :math:`s_b`

.. math:: \gamma(t) = s_a + t\,(s_b - s_a) + \sum_{k=1}^{K} c_k \sin(k \pi t), \qquad t \in [0, 1],

minimizes the line integral of the negative log posterior along it,

.. math:: F[\gamma] = \int_0^1 \Big[\big(\ell^* - \log q_s(\gamma(t) \mid x_o)\big)_+ + \lambda\Big]
          \,\lVert \gamma'(t) \rVert \, dt,

where :math:`\ell^*` is the largest log density among posterior draws and the end points. Up to
that shift, :math:`F` is :math:`\int -\log q(\gamma(t) \mid x_o) \lVert\gamma'(t)\rVert dt`; the
shift keeps the integrand positive, so that no path gets cheaper by growing longer where the
density is high, and :math:`\lambda` (``length_penalty``) is the cost of length at the mode.
The coefficients :math:`c_k` are fitted with Adam on the trapezoid rule; :math:`c = 0` is the
straight line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import xarray as xr

from ..model.sites import ModelSites
from .density import GuideLike, PosteriorDensity, site_values

__all__ = ["HighProbabilityPath", "PathPoints", "high_probability_path"]


@dataclass
class PathPoints:
    r"""Parameter sets along a path, equally spaced in the standardized unconstrained space.

    :ivar names: the flat parameters' names.
    :ivar points: constrained parameters ``[n, P]`` (:meth:`values`: per site).
    :ivar log_prob: :math:`\log q(\theta \mid x_o)` at each point (constrained, as
        :meth:`~pyro_lfi.NeuralPosterior.log_prob`), ``[n]``.
    :ivar distance: arc length from the first point in the standardized space, ``[n]``.
    :ivar integral: :math:`\int -\log q_s(\gamma \mid x_o)\, ds` along it (standardized space).
    """

    names: tuple[str, ...]
    points: torch.Tensor
    log_prob: torch.Tensor
    distance: torch.Tensor
    integral: float
    sites: ModelSites = field(repr=False)

    def values(self) -> dict[str, torch.Tensor]:
        """The points as site values ``[n, *shape]``, ready to simulate."""
        return site_values(self.sites, self.points)

    def to_dataarray(self) -> xr.DataArray:
        """The points over dims ``("point", "parameter")``, with distance and log density."""
        return xr.DataArray(
            self.points.numpy(),
            dims=("point", "parameter"),
            coords={
                "parameter": list(self.names),
                "distance": ("point", self.distance.numpy()),
                "log_prob": ("point", self.log_prob.numpy()),
            },
            name="path",
        )


@dataclass
class Frame:
    """What an orthogonal path needs: the posterior, its standardization and the path's middle."""

    density: PosteriorDensity
    loc: torch.Tensor
    scale: torch.Tensor
    midpoint: torch.Tensor
    tangent: torch.Tensor
    narrow: torch.Tensor  # eigenvectors of the draws' covariance in s, narrowest first

    def log_q(self, s: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q_s(s \mid x_o) = \log q(z \mid x_o) + \sum \log\sigma`."""
        return self.density.log_prob_z(self.loc + self.scale * s) + self.scale.log().sum()

    @torch.no_grad()
    def points(self, s: torch.Tensor, distance: torch.Tensor) -> PathPoints:
        z = self.loc + self.scale * s
        log_q = self.log_q(s)
        integral = float(-(distance.diff() * (log_q[1:] + log_q[:-1]) / 2).sum())
        d = self.density
        return PathPoints(d.names, d.to_flat(z), d.log_prob(z), distance, integral, d.sites)


@dataclass
class HighProbabilityPath(PathPoints):
    r"""The optimized path (its points are this object's), with the straight line and an
    orthogonal path to compare with.

    :ivar straight: the straight line between the same end points.
    :ivar orthogonal: a straight path of the same length through the optimized path's middle,
        orthogonal to it there (:meth:`orthogonal_path`).
    :ivar objective: :math:`F` of the optimized path; ``straight_objective``: of the straight line.
    :ivar coefficients: the sine coefficients :math:`c_k` ``[K, D]``.
    """

    straight: PathPoints
    orthogonal: PathPoints | None
    objective: float
    straight_objective: float
    coefficients: torch.Tensor
    frame: Frame = field(repr=False)

    @property
    def path_integral(self) -> float:
        r""":math:`\int -\log q\, ds` along the optimized path."""
        return self.integral

    @property
    def straight_integral(self) -> float:
        r""":math:`\int -\log q\, ds` along the straight line."""
        return self.straight.integral

    @property
    def length(self) -> float:
        """Arc length of the optimized path in the standardized space."""
        return float(self.distance[-1])

    def orthogonal_path(self, direction: Any = None, num_points: int | None = None) -> PathPoints:
        r"""A straight path of the optimized path's length through its middle, orthogonal to it.

        :param direction: a vector in the standardized unconstrained space (length :math:`D`);
            its part orthogonal to the path's tangent is used. By default the narrowest
            direction of the posterior draws (smallest principal component) that is not along
            the tangent.
        """
        f = self.frame
        candidates = f.narrow.T if direction is None else torch.as_tensor(direction, dtype=f.loc.dtype)[None]
        if candidates.shape[-1] != len(f.loc):
            raise ValueError(f"direction must have {len(f.loc)} entries (the unconstrained dimension)")
        for u in candidates:
            u = u - (u @ f.tangent) * f.tangent
            if u.norm() > 0.1 * candidates[0].norm():
                break
        else:
            raise ValueError("the direction is along the path's tangent: no orthogonal path")
        r = torch.linspace(-self.length / 2, self.length / 2, num_points or len(self.points))
        return f.points(f.midpoint + r[:, None] * (u / u.norm()), r + self.length / 2)


def curve(start: torch.Tensor, end: torch.Tensor, coefficients: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    r""":math:`\gamma(t) = s_a + t (s_b - s_a) + \sum_k c_k \sin(k\pi t)`, ``[len(t), D]``."""
    k = torch.arange(1, len(coefficients) + 1, dtype=t.dtype)
    return start + t[:, None] * (end - start) + torch.sin(math.pi * t[:, None] * k) @ coefficients


def functional(log_q: torch.Tensor, points: torch.Tensor, offset: float, penalty: float) -> torch.Tensor:
    """The trapezoid rule for :math:`F` at the points of a path and their log densities."""
    lengths = (points.diff(dim=0).pow(2).sum(-1) + 1e-12).sqrt()
    integrand = (offset - log_q).clamp_min(0.0) + penalty
    return (lengths * (integrand[1:] + integrand[:-1]) / 2).sum()


def optimize(
    log_q: Callable[[torch.Tensor], torch.Tensor], ends: tuple[torch.Tensor, torch.Tensor], offset: float, options: dict
) -> tuple[torch.Tensor, float, float]:
    """Adam on the sine coefficients from zero (the straight line); the best coefficients seen,
    their objective and the straight line's."""
    start, end = ends
    coefficients = torch.zeros(options["num_basis"], len(start), requires_grad=True)
    optimizer = torch.optim.Adam([coefficients], lr=options["lr"])
    t = torch.linspace(0.0, 1.0, options["num_points"])
    best, best_value, straight = coefficients.detach().clone(), math.inf, math.nan
    for step in range(options["num_steps"] + 1):
        points = curve(start, end, coefficients, t)
        value = functional(log_q(points), points, offset, options["length_penalty"])
        current = float(value.detach())
        if step == 0:
            straight = current
        if current < best_value:
            best, best_value = coefficients.detach().clone(), current
        if step == options["num_steps"] or not torch.isfinite(value):
            break
        (coefficients.grad,) = torch.autograd.grad(value, coefficients)
        optimizer.step()
    return best, best_value, straight


def by_length(points: torch.Tensor, num_points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_points`` points equally spaced in arc length along a densely sampled path, their
    distances from the start, the middle point and the unit tangent there."""
    cum = torch.cat([points.new_zeros(1), points.diff(dim=0).norm(dim=-1).cumsum(0)])
    targets = torch.linspace(0.0, float(cum[-1]), num_points)

    def at(d: torch.Tensor) -> torch.Tensor:
        j = torch.searchsorted(cum, d).clamp(1, len(cum) - 1)
        w = ((d - cum[j - 1]) / (cum[j] - cum[j - 1]).clamp_min(1e-12)).clamp(0, 1)
        return points[j - 1] + w[:, None] * (points[j] - points[j - 1])

    half = cum[-1:] / 2
    j = torch.searchsorted(cum, half).clamp(1, len(cum) - 1)
    tangent = (points[j] - points[j - 1])[0]
    return at(targets), targets, at(half)[0], tangent / tangent.norm().clamp_min(1e-12)


def high_probability_path(
    guide: GuideLike,
    *args: Any,
    start: Mapping[str, Any] | Any,
    end: Mapping[str, Any] | Any,
    num_points: int = 64,
    num_steps: int = 300,
    num_basis: int = 8,
    lr: float = 0.05,
    length_penalty: float = 1.0,
    num_samples: int = 1000,
    **kwargs: Any,
) -> HighProbabilityPath:
    r"""The path between ``start`` and ``end`` (site values or flat tensors of the constrained
    parameters, e.g. two posterior draws) that minimizes :math:`F`, the line integral of the
    negative log posterior of ``guide`` at the observation of ``args``/``kwargs`` (``x=x_o``).

    :param num_points: points of the discretized path (and of the returned ones).
    :param num_steps: Adam steps at learning rate ``lr`` on ``num_basis`` sine coefficients.
    :param length_penalty: :math:`\lambda`, the integrand's floor (the cost of length).
    :param num_samples: posterior draws that set the standardization and :math:`\ell^*`.
    :returns: a :class:`HighProbabilityPath`: its points, the straight line and an orthogonal path.
    """
    density = PosteriorDensity.of(guide, args, kwargs)
    if density.dim < 2 or num_points < 3 or num_basis < 1 or num_steps < 0:
        raise ValueError("a path needs at least two parameters, num_points >= 3, num_basis >= 1, num_steps >= 0")
    loc, scale, z = density.standardization(num_samples)
    ends = tuple((density.to_z(density.one(p, what))[0] - loc) / scale for p, what in ((start, "start"), (end, "end")))
    if float((ends[1] - ends[0]).norm()) < 1e-9:
        raise ValueError("start and end are the same parameter set")
    narrow = torch.linalg.eigh(torch.cov(((z - loc) / scale).T).reshape(density.dim, density.dim))[1]
    frame = Frame(density, loc, scale, ends[0], ends[0], narrow)
    with torch.no_grad():
        offset = float(torch.cat([frame.log_q((z - loc) / scale), frame.log_q(torch.stack(ends))]).max())
    options = dict(
        num_basis=num_basis, lr=lr, num_points=num_points, num_steps=num_steps, length_penalty=length_penalty
    )
    coefficients, objective, straight_objective = optimize(frame.log_q, ends, offset, options)
    with torch.no_grad():
        dense = curve(*ends, coefficients, torch.linspace(0.0, 1.0, 16 * num_points))
    s, distance, frame.midpoint, frame.tangent = by_length(dense, num_points)
    path = frame.points(s, distance)
    r = torch.linspace(0.0, 1.0, num_points)[:, None]
    straight = frame.points(ends[0] + r * (ends[1] - ends[0]), r[:, 0] * (ends[1] - ends[0]).norm())
    result = HighProbabilityPath(
        **vars(path), straight=straight, orthogonal=None, objective=objective,
        straight_objective=straight_objective, coefficients=coefficients, frame=frame,
    )
    result.orthogonal = result.orthogonal_path()
    return result
