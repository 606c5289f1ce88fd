"""Seeds derived from a campaign seed, and blocks that run under a seed without disturbing the
global random state."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pyro
import torch

__all__ = ["derived_seed", "seeded"]


def derived_seed(seed: int, key: int) -> int:
    """A seed derived from ``seed`` and ``key`` (e.g. a batch index), independent across keys."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch, numpy and random inside the block; restore the previous state after."""
    state = pyro.util.get_rng_state()
    _seed_all(seed)
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)


def _seed_all(seed: int) -> None:
    """:func:`pyro.set_rng_seed` without its per-call cost on CPU-only machines: torch's
    ``manual_seed`` formats a stack trace for each lazily seeded accelerator (~1 ms a call)."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
