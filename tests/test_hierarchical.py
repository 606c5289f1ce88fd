"""A learned single-trial likelihood inside a hierarchical model: population mean and scale, 8
units, 5 trials each. NUTS on the surrogate agrees with NUTS on the true likelihood."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st

NOISE = 0.5


def unit_response(theta):
    return theta + NOISE * torch.randn_like(theta)


def single_trial(x=None):
    """What the likelihood is trained on: one trial at parameters spread wider than any unit's."""
    theta = pyro.sample("theta", dist.Normal(0.0, 2.5).expand([1]).to_event(1))
    return pyro.sample("x", lfi.Simulator(unit_response, theta), obs=x)


def population(x=None, units=8, trials=5, likelihood=None):
    """Population mean and scale -> each unit's parameter -> iid trials; the data site is the
    simulator, or ``likelihood(theta)`` where it is known."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = pyro.sample("tau", dist.HalfNormal(1.0))
    with pyro.plate("units", units, dim=-2):
        theta = pyro.sample("theta", dist.Normal(mu.unsqueeze(-1), tau.unsqueeze(-1)).to_event(1))
        with pyro.plate("trials", trials, dim=-1):
            site = lfi.Simulator(unit_response, theta) if likelihood is None else likelihood(theta)
            return pyro.sample("x", site, obs=x)


def population_parameters(draws: dict) -> torch.Tensor:
    return torch.stack([draws["mu"], draws["tau"].log()], -1)


@pytest.mark.slow  # about 80 s: NUTS on 8 units x 5 trials of a learned flow, and on the true likelihood
def test_nuts_on_a_hierarchy_of_learned_likelihoods_matches_the_true_likelihood():
    likelihood = lfi.NeuralLikelihood(single_trial, "x", estimator="maf")
    lfi.NLE(single_trial, likelihood, progress=False, seed=0).train(
        lfi.simulate(single_trial, 3000, seed=0, progress=False)
    )
    generator = torch.Generator().manual_seed(0)
    units = 0.5 + 0.6 * torch.randn(8, 1, 1, generator=generator)
    x_o = units + NOISE * torch.randn(8, 5, 1, generator=generator)
    surrogate = lfi.sample_posterior(lfi.surrogate(population, likelihood), 800, x=x_o, num_candidates=2000)
    exact = lfi.sample_posterior(population, 800, x=x_o, num_candidates=2000,
                                 likelihood=lambda theta: dist.Normal(theta, NOISE).to_event(1))
    assert surrogate["theta"].shape == (800, 8, 1, 1)
    assert c2st(population_parameters(surrogate), population_parameters(exact), seed=0) <= 0.6
