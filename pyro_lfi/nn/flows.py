r"""Conditional normalizing flows (neural spline and masked autoregressive), built on zuko.

A flow models :math:`u = (z - \mu)/\sigma` as an invertible map of a standard normal whose
parameters are functions of the context :math:`c`:
:math:`\log q(z \mid c) = \log \mathcal{N}(f_c(u); 0, I) + \log\lvert\det J_{f_c}(u)\rvert
- \sum_d \log \sigma_d`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch.distributions import AffineTransform, Distribution, TransformedDistribution

from .estimator import ConditionalDensityEstimator

__all__ = ["Flow"]

_FLOWS = {"nsf": zuko.flows.NSF, "maf": zuko.flows.MAF}


class Flow(ConditionalDensityEstimator):
    """A conditional flow: ``kind="nsf"`` (rational-quadratic splines, Durkan et al. 2019) or
    ``"maf"`` (affine, Papamakarios et al. 2017), with autoregressive conditioners.

    :param features: dimension D of ``z``.
    :param context: dimension of the context (the embedded observation).
    :param transforms: number of stacked transforms.
    :param hidden_features: widths of each conditioner's hidden layers.
    :param kwargs: passed to :class:`zuko.flows.NSF` / :class:`zuko.flows.MAF`
        (e.g. ``bins``, ``passes``).
    """

    def __init__(
        self,
        features: int,
        context: int,
        kind: str = "nsf",
        transforms: int = 5,
        hidden_features: Sequence[int] = (64, 64),
        **kwargs,
    ):
        super().__init__(features, context)
        if kind not in _FLOWS:
            raise ValueError(f"unknown flow '{kind}'; choose one of {sorted(_FLOWS)}")
        self.kind = kind
        self.flow = _FLOWS[kind](
            features, context, transforms=transforms, hidden_features=tuple(hidden_features), **kwargs
        )

    def forward(self, context: torch.Tensor) -> Distribution:
        affine = AffineTransform(self.standardize.mean, self.standardize.std, event_dim=1)
        return TransformedDistribution(self.flow(context), [affine])
