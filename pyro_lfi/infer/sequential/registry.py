"""The sequential methods by name, and the method object ``SNPE(method=..., **options)`` builds."""

from __future__ import annotations

import inspect

from .apt import APT
from .method import SequentialMethod
from .snpe_a import SNPEA
from .tsnpe import TSNPE

__all__ = ["METHODS", "make_method"]

#: every sequential method, by the name ``SNPE(method=...)`` takes
METHODS: dict[str, type[SequentialMethod]] = {cls.name: cls for cls in (APT, SNPEA, TSNPE)}


def _options_of(cls: type) -> dict[str, object]:
    """The constructor's keywords and their defaults."""
    return {n: p.default for n, p in inspect.signature(cls).parameters.items() if p.kind is not p.VAR_KEYWORD}


def make_method(method: str | SequentialMethod, **options) -> SequentialMethod:
    """The method object for ``SNPE(method=...)``: a :class:`SequentialMethod` as given, or the
    registered class of that name built with ``options`` (``None``: not given).

    An option the class does not take is refused unless it has the default of the methods that
    do (``SNPE(method="tsnpe", num_atoms=10)`` stays allowed).
    """
    given = {key: value for key, value in options.items() if value is not None}
    if isinstance(method, SequentialMethod):
        if given:
            raise TypeError(
                f"SNPE(...) got {sorted(given)} beside a method object: pass them to the method's "
                f"constructor, {type(method).__name__}(...)"
            )
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of {tuple(METHODS)}")
    takes = _options_of(METHODS[method])
    for key, value in given.items():
        if key in takes:
            continue
        owners = [name for name, cls in METHODS.items() if key in _options_of(cls)]
        if not owners or value != _options_of(METHODS[owners[0]])[key]:
            where = " or ".join(f"method='{name}'" for name in owners) or "no method"
            raise ValueError(f"{key}={value!r} applies to {where} only; method='{method}' does not take it")
    return METHODS[method](**{key: value for key, value in given.items() if key in takes})
