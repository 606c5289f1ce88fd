"""Z-scoring with statistics fixed from a training set."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Standardize"]


class Standardize(nn.Module):
    r"""Elementwise :math:`(x - \mu) / \sigma` over an event of shape ``shape``.

    The statistics are buffers (saved with the module); :meth:`fit` sets them from data, with a
    floor on :math:`\sigma` so that constant features do not blow up.
    """

    def __init__(self, shape: torch.Size | tuple[int, ...], min_std: float = 1e-6):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.min_std = min_std

    @torch.no_grad()
    def fit(self, data: torch.Tensor) -> Standardize:
        """Set the statistics from ``data`` of shape ``[n, *shape]`` (finite rows only)."""
        data = data.reshape((-1,) + tuple(self.mean.shape))
        if len(data) >= 2:
            self.mean.copy_(data.mean(0))
            self.std.copy_(data.std(0).clamp_min(self.min_std))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
