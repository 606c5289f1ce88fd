"""The prior in the unconstrained space: density, sampling, mode."""

import dataclasses
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.model.sites import ModelSites

from .models import linear_model, moons_model, multi_model


def prior_of(model, x):
    return lfi.Prior(model, ModelSites.from_model(model, ["x"], {"x": x}), x=x)


def test_gaussian_prior_density_and_mode():
    prior = prior_of(linear_model, torch.zeros(3))
    z = torch.randn(5, 2)
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    assert torch.equal(prior.mode(), torch.zeros(2))


def test_uniform_prior_is_logistic_in_z():
    prior = prior_of(moons_model, torch.zeros(2))
    z = torch.randn(7, 2) * 3
    logistic = (torch.sigmoid(z) * torch.sigmoid(-z)).log().sum(-1)
    assert torch.allclose(prior.log_prob(z), logistic, atol=1e-5)
    samples = prior.sample(20_000)
    assert samples.shape == (20_000, 2)
    assert torch.sigmoid(samples).mean(0).sub(0.5).abs().max() < 0.01  # theta uniform on (-1, 1)


def test_several_sites_mode_is_the_density_maximum():
    prior = prior_of(multi_model, torch.zeros(5))
    mode = prior.mode()
    assert torch.allclose(mode, torch.tensor([-1.0, 0, 0, 0, 0, 0]))
    nearby = mode + 0.05 * torch.randn(200, 6)
    assert (prior.log_prob(nearby) <= prior.log_prob(mode[None])).all()


def hierarchical_model(x=None):
    scale = pyro.sample("scale", dist.LogNormal(0.0, 0.5))
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), scale.unsqueeze(-1)).to_event(1))
    return pyro.sample("x", lfi.Simulator(lambda t: t + 0.1 * torch.randn(t.shape), theta), obs=x)


def test_hierarchical_prior_density():
    prior = prior_of(hierarchical_model, torch.zeros(2))
    z = torch.randn(4, 3)
    log_scale, theta = z[:, 0], z[:, 1:]
    expected = (
        dist.Normal(0.0, 0.5).log_prob(log_scale)
        + dist.Normal(0.0, log_scale.exp()[:, None]).log_prob(theta).sum(-1)
    )
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    with pytest.raises(lfi.UnsupportedPriorError, match="hierarchical"):
        prior.mode()


def test_unsupported_prior_names_the_site():
    def model(x=None):
        rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
        return pyro.sample("x", lfi.Simulator(lambda r: r[..., None] + torch.randn(r.shape + (1,)), rate), obs=x)

    prior = prior_of(model, torch.zeros(1))
    assert math.isfinite(prior.log_prob(torch.zeros(1, 1)).item())
    with pytest.raises(lfi.UnsupportedPriorError, match="'rate' has a Gamma prior"):
        prior.mode()


def test_sites_without_a_schema_as_in_guides_saved_before_it_read_the_model_again():
    x = torch.zeros(5)
    sites = ModelSites.from_model(multi_model, ["x"], {"x": x})
    z = lfi.Prior(multi_model, sites, x=x).sample(50)
    old = dataclasses.replace(sites, schema=None)
    assert torch.allclose(lfi.Prior(multi_model, old, x=x).log_prob(z), lfi.Prior(multi_model, sites, x=x).log_prob(z))
