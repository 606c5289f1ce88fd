"""Learned likelihoods of discrete and mixed outputs (MNLE): spike counts against NUTS on the true
Poisson likelihood, choices with reaction times against their exact choice probabilities."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.nn.mixed import MixedDensityEstimator, discrete_layout

from .test_nle import nuts

STIMULI = torch.tensor([-1.0, 0.0, 1.0])


def rates(theta):
    return torch.exp(theta[..., :1] + theta[..., 1:] * STIMULI)


def spike_counts(theta):
    return torch.poisson(rates(theta))


def counts_model(x=None, trials=1):
    theta = pyro.sample("theta", dist.Normal(torch.tensor([1.0, 0.0]), 0.5).to_event(1))
    with pyro.plate("trials", trials):
        return pyro.sample("x", lfi.Simulator(spike_counts, theta), obs=x)


def poisson_model(x=None, trials=1):
    theta = pyro.sample("theta", dist.Normal(torch.tensor([1.0, 0.0]), 0.5).to_event(1))
    with pyro.plate("trials", trials):
        return pyro.sample("x", dist.Poisson(rates(theta)).to_event(1), obs=x)


@pytest.fixture(scope="module")
def counts_likelihood():
    likelihood = lfi.NeuralLikelihood(counts_model, "x")  # "auto": integer columns -> MNLE
    lfi.NLE(counts_model, likelihood, progress=False, seed=0).train(
        lfi.simulate(counts_model, 4000, seed=0, progress=False)
    )
    return likelihood


def test_spike_counts_posterior_matches_nuts_on_the_poisson_likelihood(counts_likelihood):
    assert isinstance(counts_likelihood.estimator, MixedDensityEstimator)
    assert counts_likelihood.estimator.discrete == [0, 1, 2]
    x_o = torch.poisson(rates(torch.tensor([1.2, 0.5])).expand(5, 3), generator=torch.Generator().manual_seed(1))
    surrogate = nuts(lfi.surrogate(counts_model, counts_likelihood), x=x_o, trials=5)
    exact = nuts(poisson_model, x=x_o, trials=5)
    assert c2st(surrogate, exact, seed=0) <= 0.6


def test_counts_are_a_normalized_mass_that_refuses_values_outside_training(counts_likelihood, tmp_path):
    est = counts_likelihood.estimator
    q = counts_likelihood(torch.tensor([0.5, 0.2]))
    grid = torch.cartesian_prod(*(torch.arange(int(lo), int(hi) + 1.0) for lo, hi in zip(est.low, est.high)))
    assert torch.isclose(q.expand([len(grid)]).log_prob(grid).exp().sum(), torch.tensor(1.0), atol=1e-4)
    draws = q.sample((200,))
    assert draws.shape == (200, 3) and (draws == draws.round()).all() and (draws >= 0).all()
    with pytest.raises(ValueError, match=r"column 1 of the data is discrete, integers 0\.\.\d+"):
        q.log_prob(torch.tensor([1.0, 10_000.0, 2.0]))
    with pytest.raises(ValueError, match="column 0"):
        q.log_prob(torch.tensor([0.5, 1.0, 2.0]))
    counts_likelihood.save(tmp_path / "counts.pt")
    loaded = lfi.NeuralLikelihood.load(tmp_path / "counts.pt", counts_model)
    x = torch.tensor([2.0, 3.0, 4.0])
    assert torch.allclose(loaded(torch.tensor([0.5, 0.2])).log_prob(x), q.log_prob(x))


def choices_and_times(theta):
    """A choice with probability sigmoid(theta), then a log-normal reaction time that depends on it."""
    choice = torch.bernoulli(torch.sigmoid(theta[..., 0]))
    time = torch.exp(-1.0 + 0.5 * choice + 0.3 * torch.randn_like(choice))
    return torch.stack([time, choice], -1)


def choice_model(x=None):
    theta = pyro.sample("theta", dist.Normal(0.0, 1.5).expand([1]).to_event(1))
    return pyro.sample("x", lfi.Simulator(choices_and_times, theta), obs=x)


def test_mixed_choices_and_reaction_times_have_the_exact_choice_probabilities():
    likelihood = lfi.NeuralLikelihood(choice_model, "x", estimator="mnle", discrete=[1])
    lfi.NLE(choice_model, likelihood, progress=False, seed=0).train(
        lfi.simulate(choice_model, 3000, seed=0, progress=False)
    )
    est = likelihood.estimator
    assert est.discrete == [1] and est.continuous == [0] and est.flow is not None
    theta = torch.tensor([[-1.0], [0.0], [1.5]])
    q = likelihood(theta)
    chose_one = sum(q.log_prob(torch.tensor([t, 1.0])).exp() * 0.01 for t in torch.arange(0.005, 3.0, 0.01))
    assert torch.allclose(chose_one, torch.sigmoid(theta[:, 0]), atol=0.08)
    draws = q.sample((400,))
    assert set(draws[..., 1].unique().tolist()) <= {0.0, 1.0} and (draws[..., 0] > 0).float().mean() > 0.95


def test_discrete_layout_reads_columns_and_ranges_and_refuses_nonsense():
    x = torch.tensor([[0.0, 0.5, 3.0], [2.0, 1.5, 5.0], [1.0, 0.1, 4.0]])
    layout = discrete_layout(x)
    assert layout["discrete"] == [0, 2] and layout["low"] == [0, 3] and layout["high"] == [2, 5]
    assert discrete_layout(x, margin=0.25)["high"] == [3, 6]
    with pytest.raises(ValueError, match="non-integer"):
        discrete_layout(x, discrete=[1])
    with pytest.raises(ValueError, match="no discrete column"):
        discrete_layout(x[:, 1:2])
    with pytest.raises(ValueError, match="one range"):
        MixedDensityEstimator(3, 2, discrete=[0], low=[2], high=[1])
