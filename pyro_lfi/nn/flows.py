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
from torch import nn
from torch.distributions import AffineTransform, Distribution, TransformedDistribution
from zuko.distributions import DiagNormal
from zuko.flows import ElementWiseTransform, UnconditionalDistribution
from zuko.flows import Flow as ZukoFlow
from zuko.flows.coupling import GeneralCouplingTransform

from .estimator import ConditionalDensityEstimator
from .mlp import SkipMLP
from .splines import RationalQuadraticSpline

__all__ = ["Flow"]


def coupling_nsf(
    features: int,
    context: int,
    transforms: int = 5,
    hidden_features: Sequence[int] = (64, 64),
    bins: int = 8,
    affine: bool = True,
    activation: type[nn.Module] = nn.ReLU,
) -> ZukoFlow:
    r"""Neural spline flow with coupling layers: each transform maps half of the features (an
    alternating mask) by monotonic rational-quadratic splines
    (:class:`~pyro_lfi.nn.splines.RationalQuadraticSpline`, zuko's spline with a cheaper density
    pass) whose knots are functions of the other half and the context (through ``activation``
    MLPs); a single feature gets zuko's splines conditioned on the context alone. With
    ``affine``, an elementwise affine map whose shift and log-scale are functions of the context
    comes first, :math:`u \mapsto (u - m(c)) / s(c)`, so that a posterior whose location and
    scale move with the observation needs no spline to follow it. Sampling and density
    evaluation both take one pass per transform."""
    hidden_features = tuple(hidden_features)
    hidden = {"hidden_features": hidden_features, "activation": activation}
    layers = [_conditional_affine(features, context, hidden_features)] if affine else []
    if features == 1:  # nothing to couple with: splines conditioned on the context alone
        nsf = zuko.flows.NSF(1, context, bins=bins, transforms=transforms, **hidden)
        return ZukoFlow(layers + list(nsf.transform.transforms), nsf.base)
    layers += [
        GeneralCouplingTransform(
            features,
            context,
            mask=torch.arange(features) % 2 == i % 2,
            univariate=RationalQuadraticSpline,
            shapes=[(3 * bins - 1,)],  # K widths, K heights, K - 1 derivatives
            **hidden,
        )
        for i in range(transforms)
    ]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)
    return ZukoFlow(layers, base)


def _conditional_affine(features: int, context: int, hidden_features: tuple[int, ...]) -> ElementWiseTransform:
    """Elementwise affine map whose shift and log-scale are a smooth (ELU) MLP of the context
    plus a linear map of it (:class:`~pyro_lfi.nn.SkipMLP`): a location linear in the
    observation is then exact, and the rest varies smoothly with it."""
    layer = ElementWiseTransform(features, context)
    layer.hyper = SkipMLP(context, features * layer.total, hidden_features=hidden_features, activation=nn.ELU)
    return layer


def _maf(features: int, context: int, transforms: int = 5, hidden_features: Sequence[int] = (64, 64), **kwargs):
    return zuko.flows.MAF(features, context, transforms=transforms, hidden_features=tuple(hidden_features), **kwargs)


_FLOWS = {"nsf": coupling_nsf, "maf": _maf}


class Flow(ConditionalDensityEstimator):
    """A conditional flow: ``kind="nsf"`` (rational-quadratic spline coupling layers, Durkan et
    al. 2019) or ``"maf"`` (masked autoregressive affine layers, Papamakarios et al. 2017).

    :param features: dimension D of ``z``.
    :param context: dimension of the context (the embedded observation).
    :param transforms: number of stacked transforms.
    :param hidden_features: widths of each conditioner's hidden layers.
    :param kwargs: for NSF, ``bins``, ``affine`` (a conditional elementwise affine layer first;
        default ``True``) and ``activation`` (class of the coupling MLPs' activation); for MAF,
        options of :class:`zuko.flows.MAF`.
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
        self.flow = _FLOWS[kind](features, context, transforms=transforms, hidden_features=hidden_features, **kwargs)

    def forward(self, context: torch.Tensor) -> Distribution:
        affine = AffineTransform(self.standardize.mean, self.standardize.std, event_dim=1)
        return TransformedDistribution(self.flow(context), [affine])
