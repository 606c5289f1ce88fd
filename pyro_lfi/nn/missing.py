r"""Missing features: learned values in place of NaN or inf entries, plus an indicator.

A simulator that fails for part of its output (a summary statistic that is undefined when a
neuron does not spike) returns NaN there. Rather than dropping the row, each missing entry
:math:`j` is replaced by a learned value :math:`v_j` and the network also sees the indicator
:math:`m_j = 1` (Lueckmann et al. 2017): the posterior is then learned given *which* features
are missing, as well as the others' values.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MissingFeatures"]


class MissingFeatures(nn.Module):
    """Map ``x [*batch, *shape]`` to ``[*batch, 2, *shape]``: channel 0 holds ``x`` with its
    non-finite entries replaced by learned values, channel 1 the missingness indicator.

    :param shape: event shape of one observation.
    """

    def __init__(self, shape: torch.Size | tuple[int, ...]):
        super().__init__()
        self.shape = torch.Size(shape)
        self.value = nn.Parameter(torch.zeros(self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = ~torch.isfinite(x)
        filled = torch.where(missing, self.value, x)
        return torch.stack([filled, missing.to(filled.dtype)], dim=-len(self.shape) - 1)
