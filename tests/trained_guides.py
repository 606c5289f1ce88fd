"""A session-scoped linear-Gaussian NPE guide shared by the diagnostics, baseline and compare tests
(import the fixture into a test module to use it; it is trained once per session)."""

import pytest

import pyro_lfi as lfi

from .models import linear_model


@pytest.fixture(scope="session")
def linear_guide():
    sims = lfi.simulate(linear_model, 2000, seed=0, progress=False)
    guide = lfi.NeuralPosterior(linear_model)
    lfi.NPE(linear_model, guide, progress=False, seed=0).train(sims)
    return guide
