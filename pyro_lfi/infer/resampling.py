r"""Choosing chain starts among weighted candidates: systematic resampling along a Z-order
curve, so that each mode of a posterior gets its share of the starts to within one."""

from __future__ import annotations

import torch

from ..errors import ObservationError

__all__ = ["finite_or_zero_weight", "space_filling_order", "systematic_resample"]


def finite_or_zero_weight(log_weights: torch.Tensor) -> torch.Tensor:
    """``log_weights`` in double precision, NaN as ``-inf`` (weight zero)."""
    log_weights = log_weights.double()
    return torch.where(torch.isnan(log_weights), -torch.inf, log_weights)


def systematic_resample(log_weights: torch.Tensor, num: int, order: torch.Tensor | None = None) -> torch.Tensor:
    r"""``num`` indices drawn in proportion to :math:`w_i \propto \exp(\log w_i)` by systematic
    resampling: one uniform :math:`u`, points :math:`(u + k) / num` on the cumulative weights,
    taken in ``order`` (a permutation). Any run of consecutive candidates in that order with
    total weight :math:`W` gets :math:`\lfloor num\, W \rfloor` or :math:`\lceil num\, W \rceil` draws."""
    log_weights = finite_or_zero_weight(log_weights)
    if not torch.isfinite(log_weights).any():
        raise ObservationError(
            f"the observation has zero likelihood at every one of {len(log_weights)} prior draws: raise "
            "num_candidates, or check that the observation is one the model can produce"
        )
    order = torch.arange(len(log_weights)) if order is None else order
    cdf = torch.cumsum(torch.softmax(log_weights[order], 0), 0)
    points = (torch.rand((), dtype=torch.float64) + torch.arange(num, dtype=torch.float64)) / num
    return order[torch.searchsorted(cdf, points * cdf[-1]).clamp(max=len(log_weights) - 1)]


def space_filling_order(points: torch.Tensor, log_weights: torch.Tensor, bits: int = 62) -> torch.Tensor:
    r"""A permutation of ``points`` (``[n, D]``) along a Z-order (Morton) curve, so that points near
    each other (those of one mode) mostly come one after another: each coordinate standardized
    by the weighted mean and sd (weights :math:`\propto \exp(\log w)`), clamped to
    :math:`\pm 4` sd, cut into :math:`2^b` bins (:math:`b = \lfloor 62 / D \rfloor`, at most 16;
    for :math:`D > 62` the first 62 coordinates), and the bins' bits interleaved."""
    weights = torch.softmax(finite_or_zero_weight(log_weights), 0)[:, None]
    points = points.double()
    mean = (weights * points).sum(0)
    sd = ((weights * (points - mean) ** 2).sum(0)).sqrt().clamp(min=1e-12)
    per_dim = max(1, min(16, bits // points.shape[1]))
    scaled = ((points - mean) / sd).clamp(-4, 4)[:, : bits // per_dim]
    levels = ((scaled + 4) / 8 * (2**per_dim - 1)).round().long()
    key = torch.zeros(len(points), dtype=torch.long)
    for bit in reversed(range(per_dim)):
        for column in levels.T:
            key = (key << 1) | ((column >> bit) & 1)
    return torch.argsort(key, stable=True)
