"""Simulators as users bring them: the batched calling convention, failing trial runs,
deterministic sites."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.simulation.trial import ModelError, SimulatorNeverSucceeded


def sbi_style(theta):
    """Written as sbi and sbibm teach: one leading batch dim, indexed by column."""
    n = theta.shape[0]
    a = torch.rand(n, 1) * torch.pi - torch.pi / 2
    r = 0.1 + 0.01 * torch.randn(n, 1)
    return torch.cat([r * torch.cos(a) + 0.25 - theta[:, :1], r * torch.sin(a) + theta[:, 1:]], 1)


def sbi_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(sbi_style, theta), obs=x)


def test_batched_simulator_always_sees_one_leading_batch_dim():
    shapes = []

    def sim(theta, scale):
        shapes.append((tuple(theta.shape), tuple(scale.shape)))
        return theta * scale[:, None]

    theta, scale = torch.zeros(2), torch.tensor(1.0)
    assert lfi.Simulator(sim, theta, scale).sample().shape == (2,)
    assert lfi.Simulator(sim, theta, scale).sample((5,)).shape == (5, 2)
    assert lfi.Simulator(sim, theta, scale).expand([4, 3]).sample().shape == (4, 3, 2)
    assert shapes == [((1, 2), (1,)), ((5, 2), (5,)), ((12, 2), (12,))]


def test_sbi_style_simulator_simulates_and_trains():
    sims = lfi.simulate(sbi_model, 300, seed=0, progress=False)
    assert sims["x"].shape == (300, 2) and sims.num_valid == 300
    guide = lfi.NeuralPosterior(sbi_model)
    lfi.NPE(sbi_model, guide, progress=False, max_epochs=2).train(sims)
    assert guide.sample(10, x=torch.zeros(2))["theta"].shape == (10, 2)


def test_simulator_returning_the_wrong_number_of_rows_is_named():
    def model():
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(lambda t: t[0], theta))

    with pytest.raises(lfi.SimulatorShapeError, match=r"returned shape \(2,\) for 1 parameter row"):
        lfi.simulate(model, 10, seed=0, progress=False)


@pytest.mark.parametrize("seed", range(5))
def test_trial_run_accepts_a_simulator_failing_on_most_rows(seed):
    """A simulator raising on 97 % of parameter sets is a campaign with failures, not a broken model."""

    def rarely_works(theta):
        if float(theta[0]) < 0.94:
            raise RuntimeError("no spikes")
        return theta + 0.1

    def model():
        theta = pyro.sample("theta", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(rarely_works, theta, batched=False))

    sims = lfi.simulate(model, 200, seed=seed, batch_size=50, progress=False)
    assert len(sims) == 200 and sims["x"].shape == (200, 2)
    works = sims["theta"][:, 0] >= 0.94
    assert torch.equal(sims.valid, works)
    assert (sims.status[~works] == lfi.Status.EXCEPTION).all()


def test_a_model_that_cannot_run_is_refused_with_its_error():
    def model():
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        pyro.sample("x", lfi.Simulator(lambda t: t, theta.log() + torch.ones(3) @ torch.ones(4)))

    with pytest.raises(ModelError, match=r"outside its simulators.*RuntimeError"):
        lfi.simulate(model, 10, seed=0, progress=False)


def test_a_simulator_that_never_works_asks_for_its_declared_shape():
    def broken(theta):
        raise RuntimeError("license server unreachable")

    def model(declared=None):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(broken, theta, event_shape=declared))

    with pytest.raises(SimulatorNeverSucceeded, match=r"license server.*event_shape="):
        lfi.simulate(model, 10, seed=0, progress=False)
    with pytest.warns(UserWarning, match=r"all 10 simulations are invalid.*license server"):
        sims = lfi.simulate(model, 10, seed=0, progress=False, declared=(3,))
    assert sims["x"].shape == (10, 3) and (sims.status == lfi.Status.EXCEPTION).all()


def test_deterministic_sites_are_recorded_per_row():
    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        x = pyro.sample("x", lfi.Simulator(lambda t: t + 0.1 * torch.randn(t.shape), theta), obs=x)
        pyro.deterministic("r", x.norm(dim=-1))
        return x

    sims = lfi.simulate(model, 300, seed=0, progress=False)
    assert sims["r"].shape == (300,)
    assert torch.allclose(sims["r"], sims["x"].norm(dim=-1))
    assert sims.latent_names == ("theta",) and sims.observed_names == ("x",)
    back = lfi.Simulations.from_xarray(sims.to_xarray())
    assert set(back.values) == {"theta", "x", "r"} and back.observed_names == ("x",)


def test_numpy_simulator_with_scalar_output_site():
    def sim(theta):
        return np.asarray(theta).sum(-1)  # shape (N,): a scalar per row

    def model():
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(sim, theta))

    sims = lfi.simulate(model, 50, seed=0, progress=False)
    assert sims["x"].shape == (50,)
    assert torch.allclose(sims["x"], sims["theta"].sum(-1))


def test_every_library_error_shares_one_base_and_its_builtin():
    errors = [lfi.SiteError, lfi.ObservationError, lfi.SimulatorShapeError, lfi.DeclaredShapeError,
              lfi.SimulatorLikelihoodError, lfi.NotFittedError, lfi.ProposalError, lfi.GaussianDivisionError,
              lfi.UnsupportedPriorError, lfi.CampaignMismatchError, lfi.StoreInUseError, lfi.ModelError,
              lfi.SimulatorNeverSucceeded]
    assert all(issubclass(e, lfi.LFIError) for e in errors)
    assert issubclass(lfi.SiteError, ValueError) and issubclass(lfi.SimulatorLikelihoodError, NotImplementedError)
    with pytest.raises(lfi.LFIError):
        lfi.Simulator(lambda t: t, torch.zeros(2)).log_prob(torch.zeros(2))
