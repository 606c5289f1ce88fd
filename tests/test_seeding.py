"""One way to seed and restore the global random streams, safe under exceptions."""

import random

import numpy as np
import pytest
import torch

from pyro_lfi.seeding import derived_seed, preserved_rng, seeded


def draws():
    return torch.rand(()).item(), float(np.random.rand()), random.random()


def test_seeded_repeats_and_restores_even_when_the_block_raises():
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = draws()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    with pytest.raises(RuntimeError), seeded(5):
        inside = draws()
        raise RuntimeError("simulator failed")
    assert draws() == expected  # the caller's streams are where they were
    with seeded(5):
        assert draws() == inside
    with preserved_rng():
        torch.rand(100)
    state = torch.get_rng_state()
    with seeded(None):  # no seed: the streams move on as without the block
        torch.rand(())
    assert not torch.equal(state, torch.get_rng_state())
    assert derived_seed(3, 0) != derived_seed(3, 1) and derived_seed(3, 0) == derived_seed(3, 0)
