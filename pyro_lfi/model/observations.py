"""Observations as the model receives them: read from its arguments or conditioning, and made
into floating tensors with a clear error for what is not numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyro
import torch
from pyro import poutine

from ..errors import ObservationError, shortened

__all__ = ["ObservationError", "as_observation", "read_observation"]


def as_observation(name: str, value, shape: Sequence[int] | None = None) -> torch.Tensor:
    """An observed value as a floating tensor (from a tensor, array, list or number).

    :raises ObservationError: for strings and other non-numeric values, naming the site.
    """
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    expected = "" if shape is None else f" of shape {tuple(shape)} (or [batch, *{tuple(shape)}])"
    if not isinstance(value, str | bytes):
        try:
            array = np.asarray(value)
            if array.dtype.kind in "biuf":
                return torch.as_tensor(array, dtype=torch.get_default_dtype())
        except (TypeError, ValueError):
            pass
    raise ObservationError(
        f"the observation of site '{name}' is a {type(value).__name__} ({short_repr(value)}), not numbers: "
        f"pass a tensor{expected}, or an array or list of numbers"
    )


def short_repr(value, limit: int = 60) -> str:
    text = repr(value.tolist() if isinstance(value, torch.Tensor) else value)
    return shortened(text, limit)


class _ObservationReader(pyro.poutine.messenger.Messenger):
    """Records the values of observed sites; refuses to simulate them."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.names = tuple(names)
        self.values: dict[str, torch.Tensor] = {}

    def _pyro_sample(self, msg):
        if msg["name"] not in self.names:
            return
        if not msg["is_observed"]:
            raise ObservationError(
                f"no observed value for site '{msg['name']}': pass the observation the way the "
                "model receives it (e.g. model(x=x_o) -> guide.sample(n, x=x_o)) or condition the "
                "model with pyro.condition(model, data={...})"
            )
        try:  # arrays and lists of numbers become tensors; ModelSites.flat_data reports the rest
            self.values[msg["name"]] = as_observation(msg["name"], msg["value"])
        except ObservationError:
            self.values[msg["name"]] = msg["value"]
        msg["done"] = True
        msg["stop"] = True


def read_observation(model, names: Sequence[str], *args, **kwargs) -> dict[str, torch.Tensor]:
    """Run ``model`` (blocked from outer handlers) and return the values of its observed sites."""
    reader = _ObservationReader(names)
    with poutine.block(), reader:
        model(*args, **kwargs)
    missing = [n for n in names if n not in reader.values]
    if missing:
        raise ObservationError(f"the model never reached observed site(s) {missing}")
    return reader.values
