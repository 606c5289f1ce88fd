"""Input shapes of the embedding nets: checked when a net is built, named in errors, and
reshaped to one flat batch dim in ``forward``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch

__all__ = ["Shape", "checked_shape", "choose", "series_layout", "split_batch", "to_time_channels"]

#: The shape of one observation: an int, or a sequence of sizes (``None``: any size).
Shape = int | Sequence[int | None]
Option = TypeVar("Option")


def choose(owner: str, name: str, value: str, options: Mapping[str, Option]) -> Option:
    """``options[value]``; a ``ValueError`` naming ``owner``'s argument ``name`` if it is none of them."""
    if value not in options:
        raise ValueError(f"{owner}: {name} must be one of {sorted(options)}, got {value!r}")
    return options[value]


def checked_shape(input_shape: Shape, owner: str, allowed: tuple[int, ...]) -> tuple[int | None, ...]:
    """``input_shape`` as a tuple of ``allowed`` length holding positive ints or ``None``."""
    shape = (input_shape,) if isinstance(input_shape, int) or input_shape is None else tuple(input_shape)
    if len(shape) not in allowed:
        raise ValueError(f"{owner}: input_shape must have {' or '.join(map(str, allowed))} dims, got {shape}")
    for size in shape:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"{owner}: input_shape must hold positive ints, got {shape}")
    return shape


def _describe(shape: Sequence[int | None], names: Sequence[str]) -> str:
    """``[*batch, dim, ...]`` with each dim named (``T=20``) where its size is fixed."""
    dims = (n if s is None or n == str(s) else f"{n}={s}" for n, s in zip(names, shape))
    return "[*batch, " + ", ".join(dims) + "]"


def split_batch(
    x: torch.Tensor, shape: Sequence[int | None], names: Sequence[str], owner: str
) -> tuple[torch.Size, torch.Tensor]:
    """``(batch_shape, x reshaped to [prod(batch), *event])``; raises a ``ValueError`` naming the
    expected shape unless ``x`` ends in ``shape`` (``None``: any size)."""
    k = len(shape)
    event = tuple(x.shape[x.dim() - k :]) if x.dim() >= k else None
    if event is None or any(s is not None and s != e for s, e in zip(shape, event)):
        raise ValueError(f"{owner} expects input of shape {_describe(shape, names)}, got {tuple(x.shape)}")
    if any(e == 0 for e in event):
        raise ValueError(f"{owner} got an empty input of shape {tuple(x.shape)}")
    batch = x.shape[: x.dim() - k]
    return batch, x.reshape((-1, *event))


def series_layout(
    input_shape: Shape, missing_indicator: bool, owner: str
) -> tuple[tuple[int | None, ...], tuple[int | None, ...], tuple[str, ...], int]:
    """The accepted input shape of a time-series net, the names of its dims, and the number of
    channels the net itself sees."""
    shape = checked_shape(input_shape, owner, (1, 2))
    names = ("T",) if len(shape) == 1 else ("T", "C")
    channels = 1 if len(shape) == 1 else shape[1]
    if channels is None:
        raise ValueError(f"{owner}: the number of channels must be given, got input_shape={shape}")
    if missing_indicator:
        return shape, (2, *shape), ("2", *names), 2 * channels
    return shape, shape, names, channels


def to_time_channels(x: torch.Tensor, series_dims: int, missing_indicator: bool) -> torch.Tensor:
    """``[n, (2,) T, (C,)] -> [n, T, C']``: the indicator (if any) becomes extra channels."""
    if missing_indicator:
        x = x if series_dims == 2 else x.unsqueeze(-1)  # [n, 2, T, C]
        return torch.cat([x[:, 0], x[:, 1]], dim=-1)
    return x if series_dims == 2 else x.unsqueeze(-1)
