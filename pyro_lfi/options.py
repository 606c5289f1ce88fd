"""Options passed as one object, with each field also accepted as a keyword of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["split_options"]

Options = TypeVar("Options")


def split_options(
    cls: type[Options], options: Options | None, kwargs: Mapping[str, Any], model_kwargs: Mapping | None = None
) -> tuple[Options, dict[str, Any]]:
    """``(options, model keyword arguments)`` from a call's keywords: those named like a field
    of the dataclass ``cls`` update ``options`` (``cls()`` if ``None``), the rest and
    ``model_kwargs`` go to the model (``model_kwargs`` passes a model argument whose name is an
    option's)."""
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    shorthands = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    options = dataclasses.replace(options if options is not None else cls(), **shorthands)
    return options, {**rest, **(model_kwargs or {})}
