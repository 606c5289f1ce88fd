"""The conditional density estimators a guide is built with: by name, or any callable."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..nn import ConditionalDensityEstimator, Ensemble, Flow, FlowMatching, MixtureDensityNetwork, ScoreMatching

__all__ = ["ESTIMATORS", "EstimatorSpec", "check_estimator_spec", "density_needs_ode", "make_estimator"]

EstimatorSpec = str | Callable[..., ConditionalDensityEstimator]

#: Estimators by name: ``(features, context, **kwargs) -> ConditionalDensityEstimator``.
#: ``"fmpe"`` (flow matching, :class:`~pyro_lfi.nn.FlowMatching`) and ``"npse"`` (score matching,
#: :class:`~pyro_lfi.nn.ScoreMatching`) train by regression and solve an ODE for draws and densities.
ESTIMATORS: dict[str, Callable[..., ConditionalDensityEstimator]] = {
    "nsf": functools.partial(Flow, kind="nsf"),
    "maf": functools.partial(Flow, kind="maf"),
    "mdn": MixtureDensityNetwork,
    "fmpe": FlowMatching,
    "npse": ScoreMatching,
}


def check_estimator_spec(spec: EstimatorSpec) -> None:
    """Refuse an unknown estimator name or something that is neither a name nor callable."""
    if isinstance(spec, str) and spec not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{spec}'; choose one of {tuple(ESTIMATORS)} or pass a callable")
    if not isinstance(spec, str) and not callable(spec):
        raise TypeError(f"estimator must be one of {tuple(ESTIMATORS)} or a callable")


def make_estimator(spec: EstimatorSpec, features: int, context: int, kwargs: dict) -> ConditionalDensityEstimator:
    """The estimator of ``features``-dimensional ``z`` given ``context`` features; with
    ``ensemble=K`` among ``kwargs`` (``K >= 2``), an :class:`~pyro_lfi.nn.Ensemble` of ``K``
    independently initialized ones."""
    check_estimator_spec(spec)
    kwargs = dict(kwargs)
    members = kwargs.pop("ensemble", 1)
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise ValueError(f"ensemble must be a number of members (1: no ensemble), got {members!r}")
    build = ESTIMATORS[spec] if isinstance(spec, str) else spec
    estimators = [build(features, context, **kwargs) for _ in range(members)]
    if not all(isinstance(e, ConditionalDensityEstimator) for e in estimators):
        raise TypeError("the estimator callable must return a ConditionalDensityEstimator")
    return estimators[0] if members == 1 else Ensemble(estimators)


def density_needs_ode(estimator: EstimatorSpec | ConditionalDensityEstimator | None) -> bool:
    """Whether this estimator (a built one, a registered name, or a class or partial of one)
    solves an ODE for its density (:attr:`~pyro_lfi.nn.ConditionalDensityEstimator.density_needs_ode`);
    ``False`` where that is not known before it is built (another callable)."""
    if isinstance(estimator, str):
        estimator = ESTIMATORS.get(estimator)
    while isinstance(estimator, functools.partial):
        estimator = estimator.func
    return bool(getattr(estimator, "density_needs_ode", False))
