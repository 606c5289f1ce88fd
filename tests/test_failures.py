"""A simulator that raises, hangs or returns NaN: the campaign completes and says why."""

import os

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi

from .sim_models import treacherous_model
from .test_parallel import assert_same

TIMEOUT = 0.5


@pytest.fixture(scope="module")
def campaign() -> lfi.Simulations:
    return lfi.simulate(treacherous_model, 36, seed=0, batch_size=3, timeout=TIMEOUT, progress=False)


def test_each_failure_is_a_row_with_its_reason(campaign):
    t = campaign["theta"][:, 0]
    raised, hung, nan = t > 0.7, t < -0.9, t.abs() < 0.1
    ok = ~(raised | hung | nan)
    assert raised.any() and hung.any() and nan.any()
    assert (campaign.status[raised] == lfi.Status.EXCEPTION).all()
    assert (campaign.status[hung] == lfi.Status.TIMEOUT).all()
    assert (campaign.status[nan] == lfi.Status.NONFINITE).all()
    assert (campaign.status[ok] == lfi.Status.OK).all()
    assert all("solver diverged" in m for m in campaign.message[raised.numpy()])
    assert set(campaign.message[hung.numpy()]) == {f"timed out after {TIMEOUT:g} s"}
    assert torch.isfinite(campaign["theta"]).all()  # parameters kept for every failed row
    assert campaign.summary() == {"ok": int(ok.sum()), "nonfinite": int(nan.sum()),
                                  "exception": int(raised.sum()), "timeout": int(hung.sum())}


def test_the_same_failures_on_two_processes(campaign):
    pooled = lfi.simulate(treacherous_model, 36, seed=0, batch_size=3, timeout=TIMEOUT, progress=False, workers=2)
    assert_same(campaign, pooled)


def test_npe_trains_on_the_valid_rows(campaign):
    guide = lfi.NeuralPosterior(treacherous_model, observed="x")
    lfi.NPE(treacherous_model, guide, progress=False, seed=0).train(campaign, max_epochs=3)
    draws = guide.sample(10, x=torch.tensor([0.3, 0.3]))["theta"]
    assert draws.shape == (10, 2) and torch.isfinite(draws).all()


def test_timeout_leaves_healthy_batches_unchanged():
    from .models import fragile_model

    plain = lfi.simulate(fragile_model, 60, seed=1, batch_size=20, progress=False)
    guarded = lfi.simulate(fragile_model, 60, seed=1, batch_size=20, timeout=5.0, progress=False)
    assert_same(plain, guarded)


def test_a_simulator_that_kills_its_process_is_an_exception_row():
    def crashing(theta):
        if float(theta[0]) > 0.5:
            os._exit(3)
        return theta

    def model():
        theta = pyro.sample("theta", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(crashing, theta, batched=False))

    sims = lfi.simulate(model, 12, seed=0, batch_size=4, timeout=5.0, progress=False)
    dead = sims["theta"][:, 0] > 0.5
    assert dead.any() and (~dead).any()
    assert (sims.status[dead] == lfi.Status.EXCEPTION).all() and sims.valid[~dead].all()
    assert set(sims.message[dead.numpy()]) == {"simulator process died (exit code 3)"}


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout must be a positive"):
        lfi.simulate(treacherous_model, 4, timeout=0, progress=False)
