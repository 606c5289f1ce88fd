"""Checks of the arguments a :class:`~pyro_lfi.NeuralPosterior` takes."""

from __future__ import annotations

import operator

from ..model.sites import check_bounded

__all__ = ["MISSING", "check_options", "sample_count"]

#: The ways a guide treats simulations with partly non-finite observed data.
MISSING = ("drop", "impute")


def check_options(missing: str, bounded: str) -> None:
    """A :class:`ValueError` unless ``missing`` is one of :data:`MISSING` and ``bounded`` one of
    :data:`~pyro_lfi.model.sites.BOUNDED`."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    check_bounded(bounded)


def sample_count(num_samples) -> int:
    """``num_samples`` as an int of 0 or more, or a clear error."""
    try:
        num_samples = operator.index(num_samples)
    except TypeError:
        raise TypeError(f"num_samples must be an int, got {num_samples!r}") from None
    if num_samples < 0:
        raise ValueError(f"num_samples must be 0 or more, got {num_samples}")
    return num_samples
