"""The conditional density estimators a guide is built with: by name, or any callable."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..nn import ConditionalDensityEstimator, Flow, MixtureDensityNetwork

__all__ = ["ESTIMATORS", "EstimatorSpec", "check_estimator_spec", "make_estimator"]

EstimatorSpec = str | Callable[..., ConditionalDensityEstimator]

#: Estimators by name: ``(features, context, **kwargs) -> ConditionalDensityEstimator``.
ESTIMATORS: dict[str, Callable[..., ConditionalDensityEstimator]] = {
    "nsf": functools.partial(Flow, kind="nsf"),
    "maf": functools.partial(Flow, kind="maf"),
    "mdn": MixtureDensityNetwork,
}


def check_estimator_spec(spec: EstimatorSpec) -> None:
    """Refuse an unknown estimator name or something that is neither a name nor callable."""
    if isinstance(spec, str) and spec not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{spec}'; choose one of {tuple(ESTIMATORS)} or pass a callable")
    if not isinstance(spec, str) and not callable(spec):
        raise TypeError(f"estimator must be one of {tuple(ESTIMATORS)} or a callable")


def make_estimator(spec: EstimatorSpec, features: int, context: int, kwargs: dict) -> ConditionalDensityEstimator:
    """The estimator of ``features``-dimensional ``z`` given ``context`` features."""
    check_estimator_spec(spec)
    estimator = (ESTIMATORS[spec] if isinstance(spec, str) else spec)(features, context, **kwargs)
    if not isinstance(estimator, ConditionalDensityEstimator):
        raise TypeError("the estimator callable must return a ConditionalDensityEstimator")
    return estimator
