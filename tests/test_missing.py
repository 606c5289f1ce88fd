"""Missing features (NaN entries of the observation): learned values plus an indicator."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.model.sites import ObservationError
from pyro_lfi.nn import MissingFeatures, Standardize

NOISE = 0.5
MISSING_RATE = 0.3


def patchy_simulator(theta):
    """``theta + noise``, with the second entry missing (NaN) at random in 30 % of the rows."""
    x = theta + NOISE * torch.randn_like(theta)
    gone = torch.rand(theta.shape[:-1]) < MISSING_RATE
    return torch.stack([x[..., 0], torch.where(gone, torch.nan, x[..., 1])], -1)


def patchy_model(x=None):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(patchy_simulator, theta), obs=x)


def exact_posterior(x_o, n, seed=0):
    """Entries are independent: N(x / (1 + s^2), s^2 / (1 + s^2)) where observed, the prior
    N(0, 1) where missing (missing completely at random carries no information)."""
    shrink = 1 / (1 + NOISE**2)
    observed = torch.isfinite(x_o)
    mean = torch.where(observed, shrink * x_o.nan_to_num(), 0.0)
    std = torch.where(observed, torch.tensor(NOISE**2 * shrink).sqrt(), 1.0)
    return mean + std * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_standardize_fits_each_feature_on_its_finite_entries():
    data = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 6.0], [7.0, float("inf")]])
    scaler = Standardize((2,)).fit(data)
    assert torch.allclose(scaler.mean, torch.tensor([4.0, 4.0]))
    assert torch.allclose(scaler.std, torch.stack([data[:, 0].std(), torch.tensor([2.0, 6.0]).std()]))


def test_missing_features_fills_and_flags():
    layer = MissingFeatures((3,))
    with torch.no_grad():
        layer.value.copy_(torch.tensor([-1.0, -2.0, -3.0]))
    x = torch.tensor([[[0.5, float("nan"), 1.5]], [[float("inf"), 2.0, 3.0]]])  # [2, 1, 3]
    out = layer(x)
    assert out.shape == (2, 1, 2, 3)
    assert torch.equal(out[:, 0, 0], torch.tensor([[0.5, -2.0, 1.5], [-1.0, 2.0, 3.0]]))
    assert torch.equal(out[:, 0, 1], torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


@pytest.fixture(scope="module")
def patchy_sims():
    return lfi.simulate(patchy_model, 4000, seed=0, progress=False)


def test_rows_with_missing_entries_are_kept_only_when_imputing(patchy_sims):
    partial = int((~patchy_sims.valid).sum())
    assert 0.25 < partial / len(patchy_sims) < 0.35
    assert int(lfi.NeuralPosterior(patchy_model).usable(patchy_sims).sum()) == len(patchy_sims) - partial
    assert bool(lfi.NeuralPosterior(patchy_model, missing="impute").usable(patchy_sims).all())
    with pytest.raises(ValueError, match="missing must be one of"):
        lfi.NeuralPosterior(patchy_model, missing="zero")


def test_imputing_guide_matches_the_exact_posterior_with_and_without_missing_entries(patchy_sims, tmp_path):
    guide = lfi.NeuralPosterior(patchy_model, missing="impute", transforms=3, hidden_features=(32, 32))
    lfi.NPE(patchy_model, guide, progress=False, seed=0).train(patchy_sims)
    for x_o in (torch.tensor([0.7, float("nan")]), torch.tensor([0.7, -1.2])):
        draws = guide.sample(3000, x=x_o)["theta"]
        assert c2st(exact_posterior(x_o, 3000), draws, classifier="fast") <= 0.56, x_o
    path = tmp_path / "guide.pt"
    guide.save(path)
    again = lfi.NeuralPosterior.load(path, patchy_model)
    x_o = torch.tensor([0.7, float("nan")])
    assert again.missing == "impute"
    z = guide.sample(10, x=x_o)
    assert torch.allclose(again.log_prob(z, x=x_o), guide.log_prob(z, x=x_o))


def test_a_guide_that_drops_refuses_an_observation_with_missing_entries(patchy_sims):
    guide = lfi.NeuralPosterior(patchy_model, transforms=1, hidden_features=(8,))
    lfi.NPE(patchy_model, guide, progress=False, seed=0).train(patchy_sims, max_epochs=1)
    with pytest.raises(ObservationError, match="missing='impute'"):
        guide.sample(10, x=torch.tensor([0.7, float("nan")]))
