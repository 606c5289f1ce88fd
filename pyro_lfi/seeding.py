"""Seeds derived from a campaign seed, and blocks that run under a seed without disturbing the
global random state."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pyro
import torch

__all__ = ["derived_seed", "preserved_rng", "seeded"]


def derived_seed(seed: int, key: int) -> int:
    """A seed derived from ``seed`` and ``key`` (e.g. a batch index), independent across keys."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


@contextlib.contextmanager
def preserved_rng():
    """Restore the state of torch's, numpy's and Python's generators after the block, whatever
    it drew or raised: work done on the caller's behalf stays invisible to its random streams."""
    state = pyro.util.get_rng_state()
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)


@contextlib.contextmanager
def seeded(seed: int | None):
    """Seed torch, numpy and random inside the block and restore the previous state after
    (``None``: leave the global streams as they are)."""
    if seed is None:
        yield
        return
    with preserved_rng():
        _seed_all(seed)
        yield


def _seed_all(seed: int) -> None:
    """:func:`pyro.set_rng_seed` without its per-call cost on CPU-only machines: torch's
    ``manual_seed`` formats a stack trace for each lazily seeded accelerator (~1 ms a call)."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
