"""Closed-form Gaussian-mixture operations, against numerical integration and sampling."""

import pyro.distributions as dist
import pytest
import torch

from pyro_lfi.infer.sequential.mixtures import (
    GaussianDivisionError,
    as_mixture,
    divide_by_gaussian,
    log_mixture_overlap,
    moment_matched_gaussian,
)


def mixture(locs, scales, logits):
    locs = torch.as_tensor(locs, dtype=torch.float)
    d = locs.shape[-1]
    scale_tril = torch.as_tensor(scales, dtype=torch.float)[..., None, None] * torch.eye(d)
    return dist.MixtureSameFamily(dist.Categorical(logits=torch.as_tensor(logits, dtype=torch.float)),
                                  dist.MultivariateNormal(locs, scale_tril=scale_tril))


GRID = torch.linspace(-12, 12, 24001)[:, None]


def integrate(log_density):
    return torch.trapezoid(log_density(GRID).exp(), GRID[:, 0])


def test_overlap_matches_numerical_integral():
    q = mixture([[0.0], [2.0]], [1.0, 0.5], [0.0, 1.0])
    r = mixture([[1.0], [-1.0], [3.0]], [0.7, 2.0, 1.0], [0.5, 0.0, -1.0])
    numeric = integrate(lambda z: q.log_prob(z) + r.log_prob(z))
    assert torch.allclose(log_mixture_overlap(q, r).exp(), numeric, rtol=1e-4)


def test_division_is_normalized_and_proportional():
    q = mixture([[0.0], [1.5]], [0.5, 0.8], [0.0, 0.3])
    g = dist.MultivariateNormal(torch.tensor([0.5]), covariance_matrix=torch.tensor([[2.0]]))
    divided = divide_by_gaussian(q, g)
    assert torch.allclose(integrate(divided.log_prob), torch.tensor(1.0), atol=1e-4)
    ratio = q.log_prob(GRID[::1000]) - g.log_prob(GRID[::1000]) - divided.log_prob(GRID[::1000])
    assert ratio.std() < 1e-4  # q / g = constant x divided


def test_division_by_a_narrower_gaussian_fails_clearly():
    q = mixture([[0.0]], [1.0], [0.0])
    g = dist.MultivariateNormal(torch.tensor([0.0]), covariance_matrix=torch.tensor([[0.5]]))
    with pytest.raises(GaussianDivisionError, match="wider than the Gaussian"):
        divide_by_gaussian(q, g)


def test_negligible_wide_components_are_dropped():
    q = mixture([[0.0], [3.0]], [0.5, 5.0], [0.0, -9.0])  # the wide one weighs 1.2e-4
    g = dist.MultivariateNormal(torch.tensor([0.0]), covariance_matrix=torch.tensor([[1.0]]))
    divided = divide_by_gaussian(q, g)
    assert divided.mixture_distribution.probs[1] == 0
    narrow_only = divide_by_gaussian(mixture([[0.0]], [0.5], [0.0]), g)
    z = torch.linspace(-2, 2, 9)[:, None]
    assert torch.allclose(divided.log_prob(z), narrow_only.log_prob(z), atol=1e-5)


def test_moment_matching_and_one_component_mixture():
    q = mixture([[0.0, 1.0], [2.0, -1.0]], [0.5, 1.0], [0.0, 0.5])
    g = moment_matched_gaussian(q)
    samples = q.sample((200_000,))
    assert torch.allclose(g.loc, samples.mean(0), atol=0.02)
    assert torch.allclose(g.covariance_matrix, samples.T.cov(), atol=0.03)
    z = torch.randn(5, 2)
    assert torch.allclose(as_mixture(g).log_prob(z), g.log_prob(z), atol=1e-5)
