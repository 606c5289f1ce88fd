"""SNLE and SNRE at one observation: rounds proposed from the surrogate posterior, against the
analytic posterior; a simulator that fails in half the prior does not draw the posterior there."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.seeding import seeded

from .models import linear_model, linear_posterior, linear_simulator


def exact(x_o, keep=lambda theta: torch.ones(len(theta), dtype=torch.bool)) -> torch.Tensor:
    with seeded(2):
        draws = linear_posterior(x_o).sample((4000,))
    return draws[keep(draws)][:600]


@pytest.mark.parametrize("runner,estimator,sampler", [
    pytest.param(lfi.SNLE, lfi.NeuralLikelihood, "nuts", marks=pytest.mark.slow),
    pytest.param(lfi.SNRE, lfi.NeuralRatio, "nuts", marks=pytest.mark.slow),
    (lfi.SNLE, lfi.NeuralLikelihood, "importance"),
])
def test_sequential_rounds_reach_the_analytic_posterior(runner, estimator, sampler):
    x_o = torch.tensor([0.8, -0.4, 0.3])
    sequential = runner(linear_model, estimator(linear_model, "x"), progress=False, seed=0, sampler=sampler)
    sims = sequential.run(x=x_o, num_rounds=3, simulations_per_round=400, seed=0)
    assert sims.round.tolist() == [0] * 400 + [1] * 400 + [2] * 400
    assert [r.round for r in sequential.rounds] == [0, 1, 2] and sequential.rounds[0].propose_seconds < 1e-3
    assert len(sequential.history) == 3
    draws = sequential.sample(600, x=x_o)["theta"]
    assert c2st(draws, exact(x_o), seed=0) <= 0.6


def half_failing(theta):
    x = linear_simulator(theta)
    x[theta[..., 0] > 0] = float("nan")
    return x


def half_failing_model(x=None):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(half_failing, theta), obs=x)


@pytest.mark.parametrize("sampler", [
    pytest.param("nuts", marks=pytest.mark.slow),  # about two minutes: each round proposes by NUTS on a flow
    "importance",
])
def test_the_likelihood_of_a_failing_simulator_includes_where_it_fails(sampler):
    """Fitted to valid outputs, q(x | theta, valid) goes on smoothly into theta[0] > 0, where the
    simulator never returns anything; the surrogate multiplies by P(valid | theta)."""
    x_o = torch.tensor([-0.05, 0.3, 0.0])  # the posterior of the simulator that never fails straddles 0
    likelihood = lfi.NeuralLikelihood(half_failing_model, "x", estimator="maf")
    snle = lfi.SNLE(half_failing_model, likelihood, progress=False, seed=0, sampler=sampler)
    snle.run(x=x_o, num_rounds=3, simulations_per_round=400, seed=0)
    assert snle.rounds[0].num_invalid > 150 and snle.rounds[-1].num_invalid < 40  # proposals leave the failures
    assert likelihood.validity is not None
    draws = snle.sample(600, x=x_o)["theta"]
    assert (draws[:, 0] > 0).float().mean() < 0.05
    assert c2st(draws, exact(x_o, keep=lambda theta: theta[:, 0] < 0), seed=0) <= 0.6
    likelihood.validity = None  # without it, the posterior drifts into where the simulator fails
    assert (snle.sample(600, x=x_o)["theta"][:, 0] > 0).float().mean() > 0.15


def test_a_saved_likelihood_keeps_its_validity(tmp_path):
    likelihood = lfi.NeuralLikelihood(half_failing_model, "x", estimator="maf")
    lfi.NLE(half_failing_model, likelihood, progress=False, seed=0, max_epochs=3).train(
        lfi.simulate(half_failing_model, 300, seed=0, progress=False)
    )
    likelihood.save(tmp_path / "failing.pt")
    loaded = lfi.NeuralLikelihood.load(tmp_path / "failing.pt", half_failing_model)
    theta, x = torch.tensor([[0.9, 0.0], [-0.9, 0.0]]), torch.zeros(3)
    assert loaded.validity is not None
    assert torch.allclose(loaded(theta).log_prob(x), likelihood(theta).log_prob(x))
    assert torch.all(loaded(theta).log_prob(x) < likelihood.score(theta, x.expand(2, 3)))  # log P(valid) < 0


def test_bad_round_budgets_are_refused():
    snle = lfi.SNLE(linear_model, lfi.NeuralLikelihood(linear_model, "x"), progress=False)
    with pytest.raises(ValueError, match="simulations_per_round"):
        snle.run(x=torch.zeros(3), num_rounds=1, simulations_per_round=1)
    with pytest.raises(TypeError, match="NeuralRatio"):
        lfi.SNRE(linear_model, lfi.NeuralLikelihood(linear_model, "x"))


SAMPLER_OPTIONS = {
    "nuts": {"num_chains": 2, "sampler_kwargs": {"warmup_steps": 10}},
    "importance": {"sampler": "importance", "sampler_kwargs": {"adapt_steps": 1}},
}


@pytest.mark.parametrize("sampler", ["nuts", "importance"])
def test_later_rounds_start_from_the_last_rounds_proposals(monkeypatch, sampler):
    from pyro_lfi.infer.sequential import site_rounds

    calls, real = [], site_rounds.SAMPLERS[sampler]

    def recording(model, num_samples, *args, warm_start=None, **kwargs):
        calls.append(warm_start)
        return real(model, num_samples, *args, warm_start=warm_start, **kwargs)

    monkeypatch.setitem(site_rounds.SAMPLERS, sampler, recording)
    x_o = torch.tensor([0.8, -0.4, 0.3])
    snle = lfi.SNLE(linear_model, lfi.NeuralLikelihood(linear_model, "x", estimator="maf"), progress=False, seed=0,
                    max_epochs=2, num_candidates=500, **SAMPLER_OPTIONS[sampler])
    sims = snle.run(x=x_o, num_rounds=3, simulations_per_round=40, seed=0)
    assert calls[0] is None and calls[1] is not None  # round 1 from prior draws, round 2 from round 1's
    assert torch.equal(calls[1].values["theta"], sims.latents["theta"][sims.round == 1])
    assert calls[1].log_likelihood.shape == (40,) and torch.isfinite(calls[1].log_likelihood).all()
    assert torch.equal(snle.warm_start.values["theta"], sims.latents["theta"][sims.round == 2])
    with pytest.raises(ValueError, match="sampler"):
        lfi.SNLE(linear_model, lfi.NeuralLikelihood(linear_model, "x"), sampler="slice")


def test_later_rounds_stop_after_fewer_epochs_without_improvement():
    estimator = lfi.NeuralLikelihood(linear_model, "x", estimator="maf")
    assert lfi.SNLE(linear_model, estimator).later_patience == 10  # they continue from the last round's weights
    assert lfi.SNLE(linear_model, estimator, stop_after_epochs=7).later_patience == 7
    assert lfi.SNRE(linear_model, lfi.NeuralRatio(linear_model, "x"), later_patience=3).later_patience == 3
    with pytest.raises(ValueError, match="later_patience"):
        lfi.SNLE(linear_model, estimator, later_patience=0)
    snle = lfi.SNLE(linear_model, estimator, progress=False, seed=0, max_epochs=2, later_patience=4, num_chains=2,
                    num_candidates=200, sampler_kwargs={"warmup_steps": 10})
    patience, train = [], snle.training.train

    def recording(simulations, **kwargs):
        patience.append(kwargs.get("stop_after_epochs", snle.training.config.stop_after_epochs))
        return train(simulations, **kwargs)

    snle.training.train = recording
    snle.run(x=torch.tensor([0.8, -0.4, 0.3]), num_rounds=2, simulations_per_round=40, seed=0)
    assert patience == [snle.training.config.stop_after_epochs, 4]
