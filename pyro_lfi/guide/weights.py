"""Where a guide's weights live: their names in Pyro's global param store, and loading them.

A :class:`~pyro.nn.PyroModule` registers its submodules' weights in the param store under its
own name (``{name}.estimator$$$...``, see :func:`pyro.module`). Pyro's default name is ``""``,
so two guides would share every weight's name: once one guide has run, SVI on the other reads
and steps the first one's weights. Each guide therefore gets a prefix of its own.
"""

from __future__ import annotations

import itertools

__all__ = ["UNBUILT_LOAD", "guide_name"]

_COUNTER = itertools.count()

#: Why a fresh guide cannot take a ``state_dict``, and what to do instead.
UNBUILT_LOAD = (
    "this NeuralPosterior is not built yet, so it has no networks to load weights into (they are "
    "created from the first simulations). Load a guide saved with guide.save(path) by "
    "NeuralPosterior.load(path, model), or call guide.build(simulations) before load_state_dict"
)


def guide_name(name: str | None = None) -> str:
    """``name``, or a new unique param-store prefix ``lfi_guide_<n>``."""
    if name is None:
        return f"lfi_guide_{next(_COUNTER)}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name
