"""Small models shared by the tests (importable from a subprocess, too)."""

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import pyro_lfi as lfi
from pyro_lfi.benchmark.tasks import two_moons_simulator

# -- linear Gaussian: x = A theta + noise, with an exact posterior ----------------------------------

A = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.2, 0.1]])
NOISE = 0.3
PRIOR_SCALE = 1.0


def linear_simulator(theta):
    return theta @ A.T + NOISE * torch.randn(theta.shape[:-1] + (3,))


def linear_model(x=None):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), PRIOR_SCALE).to_event(1))
    return pyro.sample("x", lfi.Simulator(linear_simulator, theta), obs=x)


def linear_posterior(x_o):
    """Exact Gaussian posterior of ``linear_model`` at ``x_o`` (batched over its leading dims)."""
    precision = torch.eye(2) / PRIOR_SCALE**2 + A.T @ A / NOISE**2
    cov = torch.linalg.inv(precision)
    mean = x_o @ A @ cov / NOISE**2  # cov (A^T x) / noise^2, row-wise
    return dist.MultivariateNormal(mean, covariance_matrix=cov)


# -- several latent sites of different supports ----------------------------------------------------


def multi_simulator(scale, u, v):
    loc = torch.cat([u, v], -1)
    return loc + scale.unsqueeze(-1) * torch.randn(loc.shape)


def multi_model(x=None):
    scale = pyro.sample("scale", dist.LogNormal(-1.0, 0.5))
    u = pyro.sample("u", dist.Uniform(-1.0, 2.0).expand([2]).to_event(1))
    v = pyro.sample("v", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    return pyro.sample("x", lfi.Simulator(multi_simulator, scale, u, v), obs=x)


# -- two moons (sbibm) ---------------------------------------------------------------------------


moons = two_moons_simulator


def moons_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(moons, theta), obs=x)


# -- a simulator that fails ------------------------------------------------------------------------


def fragile(theta):
    """NaN where theta[0] > 0.5; raises when any theta[1] > 0.8 (for the whole batch)."""
    if (theta[..., 1] > 0.8).any():
        raise RuntimeError("solver diverged")
    x = theta * 2.0
    x[theta[..., 0] > 0.5] = float("nan")
    return x


def fragile_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(fragile, theta), obs=x)


def numpy_simulator(theta):
    theta = np.asarray(theta)
    return np.stack([theta.sum(-1), np.prod(theta, -1)], -1) + np.random.normal(size=theta.shape[:-1] + (2,))


def rare(theta):
    """2 theta + noise, NaN outside the disc of radius 0.1 around (0.3, 0.6): about 3 % of the box."""
    x = 2.0 * theta + 0.05 * torch.randn_like(theta)
    x[(theta - torch.tensor([0.3, 0.6])).norm(dim=-1) > 0.1] = float("nan")
    return x


def rare_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(rare, theta), obs=x)
