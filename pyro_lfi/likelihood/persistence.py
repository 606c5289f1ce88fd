"""Saving and loading a trained likelihood or ratio: its options, shapes and weights, and the
check that the model it is loaded into has the same Simulator site."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from ..errors import SiteError
from ..model.schema import SimulatorPlaceholders, read_schema
from ..nn.validity import ValidityClassifier
from ..seeding import preserved_rng
from ..simulation.trial import uncondition
from .inputs import SimulatorParams

__all__ = ["SITE_ESTIMATOR_FORMAT", "load_site_estimator", "saved_site_estimator"]

#: Version of the files :meth:`SiteEstimator.save` writes.
SITE_ESTIMATOR_FORMAT = 1


def saved_site_estimator(estimator) -> dict:
    """What :meth:`~pyro_lfi.likelihood.site_estimator.SiteEstimator.save` writes."""
    estimator.require_built()
    return {
        "format": SITE_ESTIMATOR_FORMAT,
        "class": type(estimator).__name__,
        "observed": estimator.observed,
        "options": estimator.options(),
        "event_shape": tuple(estimator.event_shape),
        "param_shapes": [tuple(s) for s in estimator.param_shapes],
        "psi_range": estimator.psi_range,
        "state_dict": estimator.state_dict(),
    }


def load_site_estimator(cls, path: str | os.PathLike, model: Callable, args: tuple, kwargs: dict, modules: dict):
    """A ``cls`` from ``path``, attached to ``model`` once its site is checked."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or saved.get("format") != SITE_ESTIMATOR_FORMAT:
        raise ValueError(f"{path} is not a likelihood or ratio saved by this version of pyro_lfi")
    if saved["class"] != cls.__name__:
        raise ValueError(f"{path} holds a {saved['class']}, not a {cls.__name__}: load it with {saved['class']}.load")
    _check_site(path, model, saved, args, kwargs)
    estimator = cls(model, saved["observed"], **{**cls.saved_defaults, **saved["options"]}, **modules)
    estimator.event_shape = torch.Size(saved["event_shape"])
    estimator.param_shapes = tuple(torch.Size(s) for s in saved["param_shapes"])
    psi_range = saved.get("psi_range")  # files from before the range was kept have none
    psi = torch.randn(4, sum(s.numel() for s in estimator.param_shapes))
    estimator.create(psi, torch.randn(4, estimator.event_shape.numel()))  # statistics come with the weights
    if any(key.startswith("validity.") for key in saved["state_dict"]):
        estimator.validity = ValidityClassifier(psi.shape[-1])
    estimator.load_state_dict(saved["state_dict"])
    estimator.psi_range = psi_range
    return estimator.eval()


def _check_site(path, model: Callable, saved: dict, args: tuple, kwargs: dict) -> None:
    """Refuse a model whose site ``observed`` is not a Simulator with the saved parameter shapes."""
    name, saved_shapes = saved["observed"], [tuple(s) for s in saved["param_shapes"]]
    recorder = SimulatorParams(name)
    with preserved_rng():
        schema = read_schema(recorder(SimulatorPlaceholders(0.0)(uncondition(model, None))), args, kwargs)
    if recorder.params is None:
        raise SiteError(
            f"the model has no Simulator site '{name}' for the estimator in {path}; its sites are {list(schema.sites)}"
        )
    if recorder.event_shapes != saved_shapes:
        raise SiteError(
            f"site '{name}' passes its Simulator parameters of shapes {recorder.event_shapes}, but the estimator in "
            f"{path} was trained on {saved_shapes}: load it into the model it was trained for"
        )
