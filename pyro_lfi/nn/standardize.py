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
        """Set the statistics from ``data`` of shape ``[n, *shape]``, feature by feature over its
        finite entries (NaN or inf entries, e.g. missing features, are left out)."""
        data = data.reshape((-1,) + tuple(self.mean.shape))
        if len(data) >= 2 and torch.isfinite(data).all():
            self.mean.copy_(data.mean(0))
            self.std.copy_(data.std(0).clamp_min(self.min_std))
            return self
        data = torch.where(torch.isfinite(data), data, torch.nan)
        count = (~data.isnan()).sum(0)
        mean = data.nanmean(0).nan_to_num(0.0)
        var = ((data - mean) ** 2).nansum(0) / (count - 1).clamp_min(1)
        fitted = count >= 2
        self.mean.copy_(torch.where(fitted, mean, self.mean))
        self.std.copy_(torch.where(fitted, var.sqrt().clamp_min(self.min_std), self.std))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
