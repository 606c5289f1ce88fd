r"""Local modes of a tractable posterior and their Laplace approximations.

:func:`find_modes` runs BFGS from the best of many prior draws, merges optima that are one mode
and keeps each one's inverse Hessian (central differences of the exact gradient). Posteriors here
can be multimodal: SIR's observation 1 has two modes and a saddle 2.6 nats below them
(the infected fraction on day 17 is near the epidemic's peak, reached for two contact rates).
:func:`basin` splits the parameter space between the modes, so that each can be sampled on its
own and weighted by its mass (:mod:`pyro_lfi.benchmark.nuts_reference`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from pyro_lfi.benchmark.tractable import TractablePosterior

__all__ = ["Mode", "basin", "find_modes", "laplace_log_mass"]


class Mode(NamedTuple):
    """A local maximum ``z`` of the log posterior, its value and the inverse negative Hessian there."""

    z: Tensor
    log_density: float
    covariance: Tensor


def _local_mode(posterior: TractablePosterior, statistic: Tensor, start: Tensor) -> Mode | None:
    """BFGS from ``start``; ``None`` if it ends where the Hessian is not negative definite."""

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = posterior.value_and_grad(z, statistic)
        return (-value, -grad) if math.isfinite(value) else (1e300, np.zeros_like(z))

    result = minimize(objective, start.numpy(), jac=True, method="BFGS")
    mode, step = result.x, 1e-5 * np.maximum(1.0, np.abs(result.x))
    columns = []
    for j in range(mode.shape[0]):
        shift = np.zeros_like(mode)
        shift[j] = step[j]
        columns.append((objective(mode + shift)[1] - objective(mode - shift)[1]) / (2 * step[j]))
    hessian = np.stack(columns, axis=1)
    hessian = 0.5 * (hessian + hessian.T)
    if not np.isfinite(hessian).all() or np.linalg.eigvalsh(hessian).min() <= 0:
        return None
    covariance = np.linalg.inv(hessian)
    return Mode(torch.from_numpy(mode), -float(result.fun), torch.from_numpy(0.5 * (covariance + covariance.T)))


def find_modes(
    posterior: TractablePosterior, statistic: Tensor, num_candidates: int = 4096, num_starts: int = 16
) -> list[Mode]:
    """Distinct local modes, largest Laplace mass first, from the ``num_starts`` best of
    ``num_candidates`` prior draws (global RNG). Two optima are one mode if either lies within 3
    Laplace standard deviations (Mahalanobis) of the other; modes with a Laplace mass below
    ``e^-20`` of the largest are dropped."""
    candidates = posterior.prior.sample((num_candidates,))
    order = posterior.log_density(candidates, statistic).argsort(descending=True)
    modes: list[Mode] = []
    for start in candidates[order[:num_starts]]:
        mode = _local_mode(posterior, statistic, start)
        if mode is None:
            continue
        same = [i for i, m in enumerate(modes) if min(_mahalanobis(mode.z, m), _mahalanobis(m.z, mode)) < 3]
        if not same:
            modes.append(mode)
        elif mode.log_density > modes[same[0]].log_density:
            modes[same[0]] = mode
    if not modes:
        raise RuntimeError(f"{posterior.name}: no local mode found")
    largest = max(laplace_log_mass(m) for m in modes)
    return sorted((m for m in modes if laplace_log_mass(m) > largest - 20), key=laplace_log_mass, reverse=True)


def _mahalanobis(z: Tensor, mode: Mode) -> float:
    diff = z - mode.z
    return float(diff @ torch.linalg.solve(mode.covariance, diff)) ** 0.5


def laplace_log_mass(mode: Mode) -> float:
    r""":math:`\log p(\hat z \mid x_o) + \tfrac12 \log|\hat\Sigma|`: the mode's Laplace mass up to a shared constant."""
    return mode.log_density + 0.5 * float(torch.logdet(mode.covariance))


def basin(z: Tensor, modes: list[Mode]) -> Tensor:
    r"""Index of the mode each ``z[..., dim]`` belongs to: the one whose quadratic approximation
    of the log density is largest there, :math:`\arg\max_k \log p(\hat z_k \mid x_o)
    - \tfrac12 (z - \hat z_k)^\top \hat\Sigma_k^{-1} (z - \hat z_k)`."""
    scores = []
    for mode in modes:
        diff = z.double() - mode.z
        quad = (diff * torch.linalg.solve(mode.covariance, diff.unsqueeze(-1)).squeeze(-1)).sum(-1)
        scores.append(mode.log_density - 0.5 * quad)
    return torch.stack(scores, dim=-1).argmax(-1)
