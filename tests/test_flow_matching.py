"""The ODE estimators: flow matching (``estimator="fmpe"``, Dax et al. 2023) and score matching
(``estimator="npse"``, Geffner et al. 2023; Sharrock et al. 2024), through ``lfi.NPE``: accuracy
against the exact linear-Gaussian posterior, normalization, supports, persistence, the sequential
methods that take them and the one that refuses them."""

import functools
import math

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.infer import npe_loss
from pyro_lfi.infer.sequential import APT
from pyro_lfi.nn import FlowMatching, ScoreMatching

from .models import linear_model, linear_posterior, moons_model

X_O = torch.tensor([0.8, -0.6, 0.3])
ODE_ESTIMATORS = ["fmpe", "npse"]
FAST = {"progress": False, "max_epochs": 15, "seed": 0}


@functools.cache
def _linear_guide(name: str) -> lfi.NeuralPosterior:
    """NPE with ``estimator=name`` on 5000 simulations of ``linear_model``, trained once per session."""
    sims = lfi.simulate(linear_model, 5000, seed=1, progress=False)
    guide = lfi.NeuralPosterior(linear_model, estimator=name)
    lfi.NPE(linear_model, guide, progress=False, seed=1).train(sims)
    return guide


@pytest.mark.parametrize("name", ODE_ESTIMATORS)
def test_linear_gaussian_c2st(name):
    guide = _linear_guide(name)
    torch.manual_seed(2)
    approx = guide.sample(2000, x=X_O)["theta"]
    exact = linear_posterior(X_O).sample((2000,))
    accuracy = c2st(approx, exact, seed=0)
    assert accuracy <= 0.55, accuracy


@pytest.mark.parametrize("name", [*ODE_ESTIMATORS, "nsf"])
def test_npe_trains_with_the_estimators_defaults_under_the_users_options(name):
    sims = lfi.simulate(linear_model, 300, seed=0, progress=False)
    guide = lfi.NeuralPosterior(linear_model, estimator=name)
    reports = []
    npe = lfi.NPE(linear_model, guide, progress=False, seed=0, max_epochs=1, lr_decay=1.0, callbacks=[reports.append])
    npe.train(sims)
    defaults = {**lfi.TrainingConfig().__dict__, **guide.estimator.training_defaults}
    assert reports[-1].learning_rate == defaults["learning_rate"]
    assert (defaults["batch_size"] == 200) == (name in ODE_ESTIMATORS)
    npe.train(sims, learning_rate=5e-3)  # the user's option wins over the estimator's
    assert reports[-1].learning_rate == 5e-3
    assert lfi.NPE(linear_model, guide, progress=False, learning_rate=4e-3)._training_options({}).learning_rate == 4e-3


@pytest.mark.parametrize("name", ODE_ESTIMATORS)
def test_the_trained_density_integrates_to_one_on_a_2d_grid(name):
    guide = _linear_guide(name)
    exact = linear_posterior(X_O)
    half = 6.0 * exact.covariance_matrix.diagonal().sqrt()  # +-6 posterior standard deviations
    axes = [torch.linspace(m - h, m + h, 81) for m, h in zip(exact.mean.tolist(), half.tolist())]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    with torch.no_grad():
        density = guide.log_prob({"theta": grid.reshape(-1, 2)}, x=X_O).exp().reshape(81, 81)
    mass = torch.trapezoid(torch.trapezoid(density, axes[1], dim=1), axes[0]).item()
    assert mass == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("name", ODE_ESTIMATORS)
def test_save_and_load_give_the_same_density(name, tmp_path):
    guide = _linear_guide(name)
    guide.save(tmp_path / "guide.pt")
    loaded = lfi.NeuralPosterior.load(tmp_path / "guide.pt", linear_model)
    assert loaded is not guide and loaded.estimator_spec == name
    theta = {"theta": linear_posterior(X_O).sample((50,))}
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(theta, x=X_O), guide.log_prob(theta, x=X_O), atol=1e-5)


@pytest.mark.parametrize("name", ODE_ESTIMATORS)
def test_samples_of_a_bounded_prior_stay_inside_its_support(name):
    sims = lfi.simulate(moons_model, 1000, seed=0, progress=False)
    guide = lfi.NeuralPosterior(moons_model, estimator=name)
    lfi.NPE(moons_model, guide, **FAST).train(sims)
    theta = guide.sample(2000, x=torch.zeros(2))["theta"]
    assert theta.shape == (2000, 2) and ((theta > -1) & (theta < 1)).all()


@pytest.mark.parametrize("make", [FlowMatching, ScoreMatching], ids=ODE_ESTIMATORS)
def test_npe_loss_is_the_estimators_loss_on_the_standardized_variable(make):
    """The loss hook: NPE trains what the estimator says; flows keep the negative log density."""
    sims = lfi.simulate(linear_model, 128, seed=0, progress=False)
    flow = lfi.NeuralPosterior(linear_model, estimator="nsf").build(sims)
    x, z = lfi.NPE(linear_model, flow).tensors(sims)
    assert torch.allclose(npe_loss(flow, x, z), -flow.estimate(x).log_prob(z).mean())
    guide = lfi.NeuralPosterior(linear_model, estimator=make).build(sims)
    torch.manual_seed(0)
    loss = npe_loss(guide, x, z)
    torch.manual_seed(0)
    assert torch.allclose(loss, guide.estimator.loss(z, guide.embed(x)).mean())
    assert not torch.allclose(loss, npe_loss(guide, x, z))  # a fresh t and noise per call
    # the same rows in other units of z give the same loss: it is a loss on u = (z - mu) / sigma
    scaled = lfi.NeuralPosterior(linear_model, estimator=make).build(sims)
    scaled.load_state_dict(guide.state_dict())
    scaled.estimator.standardize.mean.mul_(10.0)
    scaled.estimator.standardize.std.mul_(10.0)
    torch.manual_seed(1)
    loss = npe_loss(guide, x, z)
    torch.manual_seed(1)
    assert torch.allclose(loss, npe_loss(scaled, x, 10.0 * z), atol=1e-6)


class _GaussianTransport:
    """Exact fields that carry the standardized data distribution N(m, s^2) (D = 1) to the noise."""

    m, s = 2.0, 0.5

    @classmethod
    def flow_matching(cls, t, u):  # the OT path's marginal N(t m, (1 - t)^2 + t^2 s^2) (sigma_min ~ 0)
        var, dvar = (1 - t) ** 2 + (t * cls.s) ** 2, -2 * (1 - t) + 2 * t * cls.s**2
        return cls.m + 0.5 * dvar / var * (u - t * cls.m)

    @classmethod
    def noise(cls, estimator, t, u):  # eps = sigma_t (u - m_t m) / (m_t^2 s^2 + sigma_t^2)
        mean, std = estimator.kernel(t)
        return std * (u - mean * cls.m) / (mean**2 * cls.s**2 + std**2)


def test_the_ode_runs_from_the_data_to_the_noise_with_the_exact_density(monkeypatch):
    """With the exact field of a Gaussian, log_prob is the Gaussian's and draws follow it: the
    transform maps the data end (t=1 for FMPE, t=eps for NPSE) to the base and back."""
    truth = torch.distributions.Normal(_GaussianTransport.m, _GaussianTransport.s)
    u = torch.tensor([[1.0], [2.0], [3.0]])
    fmpe, npse = FlowMatching(1, 2, sigma_min=0.0), ScoreMatching(1, 2, t_min=1e-5)
    monkeypatch.setattr(fmpe, "velocity", lambda t, u, c: _GaussianTransport.flow_matching(t, u))
    monkeypatch.setattr(npse, "noise", lambda t, u, c: _GaussianTransport.noise(npse, t, u))
    torch.manual_seed(0)
    for estimator, tolerance in ((fmpe, 1e-3), (npse, 0.05)):  # NPSE: u_1 is N(0, 1) up to m_1 = 0.0066
        with torch.no_grad():
            q = estimator(torch.zeros(2))
            assert torch.allclose(q.log_prob(u), truth.log_prob(u[:, 0]), atol=tolerance)
            draws = q.sample((4000,))
        assert abs(draws.mean() - truth.mean) < 0.05 and abs(draws.std() - truth.stddev) < 0.05


def test_the_divergence_is_hutchinsons_estimate_above_ten_features():
    assert FlowMatching(10, 2).exact and not FlowMatching(11, 2).exact and ScoreMatching(11, 2, exact=True).exact
    estimator = ScoreMatching(12, 3)
    torch.nn.init.normal_(estimator.field.output_layer[-1].weight, std=0.1)
    with torch.no_grad():
        q = estimator(torch.randn(4, 3))
        z = q.sample((5,))
        log_q = q.log_prob(z)
    assert z.shape == (5, 4, 12) and log_q.shape == (5, 4) and torch.isfinite(log_q).all()


@pytest.mark.parametrize("name", ODE_ESTIMATORS)
def test_apt_refuses_an_ode_estimator_with_the_valid_combinations(name):
    with pytest.raises(ValueError, match=r"method='tsnpe'.*method='apt' with estimator='nsf', 'maf' or 'mdn'"):
        lfi.SNPE(linear_model, lfi.NeuralPosterior(linear_model, estimator=name), method="apt")
    with pytest.raises(ValueError, match="mixture density guide"):
        lfi.SNPE(linear_model, lfi.NeuralPosterior(linear_model, estimator=name), method="snpe-a")
    # a callable making one is known once built: refused when the rounds start
    guide = lfi.NeuralPosterior(linear_model, estimator=lambda d, c: FlowMatching(d, c))
    guide.build(lfi.simulate(linear_model, 50, seed=0, progress=False))
    with pytest.raises(ValueError, match="solves an ODE"):
        APT(loss="atomic").check_guide(guide)


def test_tsnpe_trains_fmpe_for_two_rounds():
    guide = lfi.NeuralPosterior(linear_model, estimator="fmpe")
    snpe = lfi.SNPE(linear_model, guide, method="tsnpe", **FAST)
    sims = snpe.run(x=X_O, num_rounds=2, simulations_per_round=500, seed=0)
    assert [r.proposal for r in snpe.rounds] == ["prior", "truncated prior"]
    assert [r.loss for r in snpe.rounds] == ["npe", "npe"] and sims.round.tolist().count(1) == 500
    assert all(math.isfinite(r.validation_loss) for r in snpe.rounds)
    exact = linear_posterior(X_O)
    inside = exact.log_prob(sims.latents["theta"][sims.round == 1])  # round 1 is focused on x_o
    outside = exact.log_prob(sims.latents["theta"][sims.round == 0])
    assert inside.median() > outside.median()
