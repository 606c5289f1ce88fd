"""Guides truncated to the prior's box (``NeuralPosterior(..., bounded="truncate")``)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

import pyro_lfi as lfi
from pyro_lfi import analysis
from pyro_lfi.diagnostics import c2st
from pyro_lfi.guide.truncation import LeakageError, TruncatedDensity

NOISE = 0.3
X_EDGE = torch.tensor([1.2, 0.3])  # beyond the box's upper bound in its first coordinate


def box_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-torch.ones(2), torch.ones(2)).to_event(1))
    return pyro.sample("x", lfi.Simulator(lambda t: t + NOISE * torch.randn_like(t), theta), obs=x)


def scaled_box_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-torch.ones(2), torch.ones(2)).to_event(1))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 0.1))  # a half-line site: keeps its log bijection
    return pyro.sample("x", lfi.Simulator(lambda t, s: t + s[..., None] * torch.randn_like(t), theta, scale), obs=x)


def edge_posterior(x_o: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Exact draws of theta given x_o: a normal cut to [-1, 1] per coordinate."""
    loc = x_o.double().numpy()
    a, b = (-1 - loc) / NOISE, (1 - loc) / NOISE
    draws = stats.truncnorm(a, b, loc=loc, scale=NOISE).rvs(size=(n, 2), random_state=seed)
    return torch.as_tensor(draws, dtype=torch.float32)


def in_box(z: torch.Tensor) -> torch.Tensor:
    return ((z >= 0) & (z <= 2)).all(-1)


def test_truncated_density_matches_a_truncated_normal_and_samples_inside():
    loc = torch.tensor([[0.0, 0.0], [1.0, -0.5]])  # a batch of two observations
    q = TruncatedDensity(dist.Normal(loc, 1.0).to_event(1), in_box)
    exact = stats.truncnorm(-loc.numpy(), 2 - loc.numpy(), loc=loc.numpy())  # per coordinate, cut to [0, 2]
    torch.manual_seed(0)
    draws = q.sample((4000,))
    assert draws.shape == (4000, 2, 2)
    assert in_box(draws).all()
    assert torch.allclose(draws.mean(0), torch.as_tensor(exact.mean(), dtype=torch.float32), atol=0.05)
    z = torch.tensor([[0.5, 1.5], [1.0, 0.2]])
    log_exact = torch.as_tensor(exact.logpdf(z.numpy()).sum(-1), dtype=torch.float32)
    assert torch.allclose(q.log_prob(z), log_exact, atol=0.03)  # the normalizer from 50,000 draws each
    assert q.log_prob(torch.tensor([[-0.1, 1.0], [1.0, 3.0]])).isneginf().all()


def test_a_density_that_leaked_out_of_the_box_is_an_error_not_a_hang():
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    far = TruncatedDensity(base, lambda z: (z > 8).all(-1), max_draws_per_sample=10)
    with pytest.raises(LeakageError, match="bounded='transform'"):
        far.sample((100,))


def test_only_interval_sites_are_truncated():
    sims = lfi.simulate(scaled_box_model, 10, seed=0, progress=False)
    guide = lfi.NeuralPosterior(scaled_box_model, bounded="truncate").build(sims)
    theta, scale = guide.sites.latents
    assert theta.truncated and not scale.truncated
    z = torch.tensor([[0.5, -0.5, 3.0], [1.5, 0.0, -3.0]])  # the scale's z is its log: any real
    assert guide.sites.inside(z).tolist() == [True, False]
    with pytest.raises(ValueError, match="bounded must be one of"):
        lfi.NeuralPosterior(scaled_box_model, bounded="clip")


@pytest.fixture(scope="module")
def edge_guide():
    """APT at an observation beyond the box: the posterior piles up against theta_0 = 1."""
    guide = lfi.NeuralPosterior(box_model, bounded="truncate")
    lfi.SNPE(box_model, guide, progress=False, seed=0).run(x=X_EDGE, num_rounds=3, simulations_per_round=500, seed=0)
    return guide


def test_apt_learns_a_posterior_against_the_prior_bound(edge_guide):
    torch.manual_seed(1)
    draws = edge_guide.sample(2000, x=X_EDGE)["theta"]
    assert ((draws >= -1) & (draws <= 1)).all()
    # seeds 0-2: 0.529, 0.519, 0.531 truncated; 0.536, 0.555, 0.544 through the logit
    accuracy = c2st(draws, edge_posterior(X_EDGE, 2000), seed=0)
    assert accuracy <= 0.56, accuracy


def test_the_truncated_density_integrates_to_one_over_the_box(edge_guide):
    n = 200
    centres = torch.linspace(-1, 1, n + 1)[:-1] + 1 / n
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = edge_guide.log_prob({"theta": grid}, x=X_EDGE).exp()
    assert abs(float(density.sum() * (2 / n) ** 2) - 1) < 0.02
    outside = edge_guide.log_prob({"theta": torch.tensor([[1.1, 0.0]])}, x=X_EDGE)
    assert outside.isneginf().all()


def test_a_saved_truncated_guide_reloads_truncated(edge_guide, tmp_path):
    edge_guide.save(tmp_path / "guide.pt")
    loaded = lfi.NeuralPosterior.load(tmp_path / "guide.pt", box_model)
    assert loaded.bounded == "truncate" and loaded.sites.truncated
    theta = torch.tensor([[0.9, 0.2], [0.5, -0.3]])
    expected = edge_guide.log_prob({"theta": theta}, x=X_EDGE)
    assert torch.allclose(loaded.log_prob({"theta": theta}, x=X_EDGE), expected, atol=0.02)  # normalizers by MC
    torch.manual_seed(0)
    assert (loaded.sample(500, x=X_EDGE)["theta"].abs() <= 1).all()


def test_a_truncated_guide_is_a_pyro_guide(edge_guide):
    trace = pyro.poutine.trace(edge_guide).get_trace(x=X_EDGE)
    trace.compute_log_prob()
    theta = trace.nodes["theta"]["value"]
    assert (theta.abs() <= 1).all()
    total = sum(node["log_prob_sum"] for node in trace.nodes.values() if node["type"] == "sample")
    assert torch.allclose(total, edge_guide.log_prob({"theta": theta}, x=X_EDGE), atol=0.02)


def test_posterior_analysis_and_arviz_export_of_a_truncated_guide(edge_guide):
    density = analysis.conditional_density(edge_guide, x=X_EDGE, condition=torch.tensor([0.9, 0.2]), resolution=20)
    assert bool(np.isfinite(density.values).all()) and float(density.max()) > 0
    torch.manual_seed(0)
    ends = edge_guide.sample(2, x=X_EDGE)["theta"]
    path = analysis.high_probability_path(edge_guide, x=X_EDGE, start=ends[0], end=ends[1], num_steps=30)
    assert math.isfinite(path.path_integral) and path.path_integral <= path.straight_integral + 1e-6
    idata = lfi.to_inference_data(edge_guide, num_samples=200, x=X_EDGE)
    assert np.isfinite(idata.sample_stats["log_q"].values).all()
