"""Ensembles (``NeuralPosterior(..., ensemble=K)``): a uniform mixture of K independently
initialized estimators trained together by ``lfi.NPE``, against the exact linear-Gaussian posterior."""

import functools
import math

import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.nn import Ensemble, FlowMatching, MixtureDensityNetwork, UniformMixture

from .models import linear_model, linear_posterior, moons_model

X_O = torch.tensor([0.8, -0.6, 0.3])


@functools.cache
def _ensemble() -> lfi.NeuralPosterior:
    """An ensemble of 2 NSFs trained once on 2000 simulations of ``linear_model``."""
    sims = lfi.simulate(linear_model, 2000, seed=1, progress=False)
    guide = lfi.NeuralPosterior(linear_model, ensemble=2)
    lfi.NPE(linear_model, guide, progress=False, seed=1).train(sims)
    return guide


def test_the_ensemble_matches_the_analytic_posterior():
    guide = _ensemble()
    assert isinstance(guide.estimator, Ensemble) and len(guide.estimator.members) == 2
    torch.manual_seed(2)
    approx = guide.sample(2000, x=X_O)["theta"]
    exact = linear_posterior(X_O).sample((2000,))
    assert c2st(approx, exact, seed=0) <= 0.55


def test_its_density_is_the_mean_of_its_members_and_they_differ():
    guide = _ensemble()
    context = guide.embed(X_O)
    z = linear_posterior(X_O).sample((200,))
    with torch.no_grad():
        members = torch.stack([member(context).log_prob(z) for member in guide.estimator.members])
        mixture = guide.estimate(X_O).log_prob(z)
    assert torch.allclose(mixture, members.logsumexp(0) - math.log(2), atol=1e-5)
    first, second = (next(iter(m.parameters())) for m in guide.estimator.members[:2])
    assert not torch.allclose(first, second)  # independently initialized (and trained apart)
    assert (members[0] - members[1]).abs().max() > 1e-3


def test_draws_come_from_each_component_in_equal_shares():
    mixture = UniformMixture([dist.Normal(torch.full((4,), -5.0), 1.0), dist.Normal(torch.full((4,), 5.0), 1.0)])
    torch.manual_seed(0)
    draws = mixture.sample((4000,))
    assert draws.shape == (4000, 4)
    assert (draws > 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert not mixture.has_rsample or mixture.rsample((3,)).shape == (3, 4)
    expected = torch.logaddexp(dist.Normal(-5.0, 1.0).log_prob(torch.tensor(1.0)), dist.Normal(5.0, 1.0).log_prob(
        torch.tensor(1.0))) - math.log(2)
    assert torch.allclose(mixture.log_prob(torch.ones(4)), expected.expand(4))


def test_save_and_load_keep_the_members(tmp_path):
    guide = _ensemble()
    guide.save(tmp_path / "ensemble.pt")
    loaded = lfi.NeuralPosterior.load(tmp_path / "ensemble.pt", linear_model)
    assert isinstance(loaded.estimator, Ensemble) and len(loaded.estimator.members) == 2
    theta = {"theta": linear_posterior(X_O).sample((50,))}
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(theta, x=X_O), guide.log_prob(theta, x=X_O), atol=1e-5)


def test_bounded_supports_and_sequential_rounds():
    sims = lfi.simulate(moons_model, 600, seed=0, progress=False)
    guide = lfi.NeuralPosterior(moons_model, estimator="maf", ensemble=2)
    lfi.NPE(moons_model, guide, progress=False, seed=0, max_epochs=5).train(sims)
    theta = guide.sample(1000, x=torch.zeros(2))["theta"]
    assert ((theta > -1) & (theta < 1)).all()
    sequential = lfi.NeuralPosterior(linear_model, ensemble=2)
    snpe = lfi.SNPE(linear_model, sequential, method="tsnpe", progress=False, seed=0, max_epochs=5)
    rows = snpe.run(x=X_O, num_rounds=2, simulations_per_round=300, seed=0)
    assert rows.round.tolist() == [0] * 300 + [1] * 300 and isinstance(sequential.estimator, Ensemble)


def test_it_trains_with_its_members_defaults_where_they_agree():
    matching = Ensemble([FlowMatching(2, 3), FlowMatching(2, 3)])
    assert matching.training_defaults == FlowMatching.training_defaults and matching.training_defaults
    assert Ensemble([FlowMatching(2, 3), MixtureDensityNetwork(2, 3)]).training_defaults == {}
