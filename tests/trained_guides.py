"""A linear-Gaussian NPE guide and NUTS run shared by the diagnostics, baseline and compare tests.

Import the fixtures into a test module to use them. Fixtures imported into several modules are
separate definitions to pytest, so the work itself is cached here: it runs once per session.
"""

import functools

import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.baselines import mcmc

from .models import NOISE, A, linear_model

#: The observation the shared NUTS run conditions on.
X_O = torch.tensor([0.8, -0.6, 0.3])


@functools.cache
def _linear_guide() -> lfi.NeuralPosterior:
    sims = lfi.simulate(linear_model, 2000, seed=0, progress=False)
    guide = lfi.NeuralPosterior(linear_model)
    lfi.NPE(linear_model, guide, progress=False, seed=0).train(sims)
    return guide


@functools.cache
def _linear_nuts():
    likelihood = {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)}
    return mcmc(linear_model, x=X_O, likelihood=likelihood, num_samples=600, warmup_steps=200, seed=0)


@pytest.fixture
def linear_guide():
    """NPE on 2000 simulations of ``linear_model`` (seed 0), trained once per session."""
    return _linear_guide()


@pytest.fixture
def linear_nuts():
    """NUTS on the tractable linear model at ``X_O`` (600 draws, one chain), run once per session."""
    return _linear_nuts()
