"""What determines the rows of a campaign, written as JSON and compared across machines.

A store on disk must only be resumed by the campaign that made it. Besides the seed and the
batching, a row depends on the model's sites (names, shapes, supports), the prior's parameters,
the code of the model and of each simulator, and the model's arguments. :func:`describe` turns
these into JSON; :func:`differences` compares two descriptions. Floats are compared with a
relative tolerance, never bit for bit, so a store written on one CPU resumes on another, and
large tensors are summarized by a few moments instead of being written out.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import numbers
import re
from collections.abc import Callable

import numpy as np
import torch

from ..errors import shortened

__all__ = ["code_identity", "describe", "differences", "distribution_identity"]

#: Tensors with at most this many entries are written out; larger ones as moments.
MAX_LISTED = 64
#: How deep functions captured by closures are followed.
MAX_DEPTH = 3
#: Relative tolerance of float comparisons (rounding differs between CPUs, not more).
RTOL = 1e-5


def describe(value, depth: int = 0) -> object:
    """A JSON description of ``value`` (tensors, arrays, numbers, strings, containers, code)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        if array.dtype.kind not in "biuf":
            return {"array": list(array.shape), "dtype": str(array.dtype)}
        array = array.astype(np.float64)
        if array.size <= MAX_LISTED:
            return {"array": list(array.shape), "values": array.ravel().tolist()}
        flat = array.ravel()
        weights = np.linspace(-1.0, 1.0, flat.size)
        with np.errstate(all="ignore"):
            moments = [flat.mean(), flat.std(), (weights * flat).mean(), flat.min(), flat.max()]
        return {"array": list(array.shape), "moments": [float(m) for m in moments]}
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Number):
        return float(value) if isinstance(value, numbers.Real) else str(value)
    if isinstance(value, dict):
        return {str(k): describe(v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v, depth) for v in value]
    if callable(value):
        return code_identity(value, depth + 1)
    return _stable_repr(value)


def code_identity(fn: Callable, depth: int = 0) -> dict:
    """Name and a hash of the source of ``fn`` (a function, a partial, a callable object or a
    Pyro-wrapped model), plus the values its closure captured (functions among them to a
    depth of :data:`MAX_DEPTH`)."""
    if isinstance(fn, functools.partial):
        return {"partial": code_identity(fn.func, depth), "args": describe(fn.args, depth),
                "kwargs": describe(fn.keywords, depth)}
    inner = getattr(fn, "fn", None)  # pyro.poutine handlers wrap the model they were given
    if inner is not None and callable(inner) and not inspect.isfunction(fn):
        return {"wrapper": type(fn).__name__, "fn": code_identity(inner, depth)}
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)  # an object: its class
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    identity: dict = {"name": name, "code": _source_hash(target)}
    cells = getattr(inspect.unwrap(target), "__closure__", None) or ()
    captured = [c.cell_contents for c in cells if _has_contents(c)]
    if captured and depth < MAX_DEPTH:
        identity["closure"] = [describe(v, depth) for v in captured if not callable(v) or inspect.isfunction(v)]
    return identity


def distribution_identity(fn) -> dict:
    """Type, shapes, support and parameters of a distribution and of the ones it wraps."""
    layers = []
    while fn is not None:
        params = {k: describe(v) for k, v in vars(fn).items()
                  if isinstance(v, torch.Tensor) and not k.startswith("_")}
        layer = {"type": type(fn).__name__, "batch_shape": list(fn.batch_shape),
                 "event_shape": list(fn.event_shape), "params": params}
        transforms = getattr(fn, "transforms", None)
        if transforms:
            layer["transforms"] = [repr(t) for t in transforms]
        layers.append(layer)
        fn = getattr(fn, "base_dist", None)
    return {"layers": layers}


def differences(stored, asked, path: str = "") -> list[str]:
    """Where ``asked`` differs from ``stored`` (floats within :data:`RTOL` count as equal)."""
    if isinstance(stored, dict) and isinstance(asked, dict):
        out = []
        for key in sorted(stored.keys() | asked.keys()):
            where = f"{path}.{key}" if path else key
            if key not in stored or key not in asked:
                out.append(f"{where}: stored {stored.get(key, '(absent)')!r}, asked {asked.get(key, '(absent)')!r}")
            else:
                out.extend(differences(stored[key], asked[key], where))
        return out
    if isinstance(stored, list) and isinstance(asked, list) and len(stored) == len(asked):
        return [d for i, (s, a) in enumerate(zip(stored, asked)) for d in differences(s, a, f"{path}[{i}]")]
    if _is_float(stored) and _is_float(asked):
        scale = max(abs(stored), abs(asked))
        close = stored == asked or (math.isnan(stored) and math.isnan(asked)) or abs(stored - asked) <= RTOL * scale
        return [] if close else [f"{path}: stored {stored!r}, asked {asked!r}"]
    if stored == asked:
        return []
    return [f"{path}: stored {shortened(repr(stored), 120)}, asked {shortened(repr(asked), 120)}"]


def _source_hash(fn) -> str:
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(inspect.unwrap(fn), "__code__", None)
        if code is None:
            return "unknown"
        text = f"{code.co_code.hex()}{code.co_consts!r}{code.co_names!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _stable_repr(value, width: int = 200) -> str:
    """``repr`` without memory addresses, which change from run to run (hashed if long)."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
    return text if len(text) <= width else f"{type(value).__name__}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _is_float(value) -> bool:
    return isinstance(value, float)
