"""A learned likelihood or ratio knows where it was trained, and its surrogate refuses a model
whose prior takes the site's parameters elsewhere."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.likelihood.reach import MARGIN, check_reach, covered_range

from .models import PRIOR_SCALE, fragile_model, linear_model, linear_simulator


def scaled_prior_model(scale: float, shift: float = 0.0):
    """The linear Gaussian model of ``tests.models`` with the prior N(shift, scale^2) per coordinate."""

    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(shift, scale).expand([2]).to_event(1))
        return pyro.sample("x", lfi.Simulator(linear_simulator, theta), obs=x)

    return model


def quickly_trained(estimator, training):
    sims = lfi.simulate(linear_model, 1000, seed=0, progress=False)
    training(linear_model, estimator, progress=False, seed=0, max_epochs=2).train(sims)
    return estimator, sims


@pytest.mark.parametrize("kind", ["ratio", "likelihood"])
def test_a_surrogate_refuses_a_prior_beyond_the_training_range(kind, tmp_path):
    estimator, training = {
        "ratio": (lfi.NeuralRatio(linear_model, "x"), lfi.NRE),
        "likelihood": (lfi.NeuralLikelihood(linear_model, "x"), lfi.NLE),
    }[kind]
    estimator, sims = quickly_trained(estimator, training)
    assert torch.equal(estimator.psi_range, torch.stack([sims.values["theta"].amin(0), sims.values["theta"].amax(0)]))
    x = torch.zeros(3)
    for fine in (linear_model, scaled_prior_model(0.5), scaled_prior_model(PRIOR_SCALE, shift=0.3)):
        with pyro.poutine.trace() as tracer:
            lfi.surrogate(fine, estimator)(x=x)
        assert "x" in tracer.trace.nodes  # scored, not refused
    name = type(estimator).__name__
    for wide in (scaled_prior_model(3.0), scaled_prior_model(PRIOR_SCALE, shift=4.0)):
        model = lfi.surrogate(wide, estimator)
        with pytest.raises(lfi.SiteError, match=f"outside where its {name} was trained: parameter [01]"):
            model(x=x)
        with pytest.raises(lfi.SiteError, match="narrow the prior"):  # every call until it passes
            model(x=x)
        lfi.surrogate(wide, estimator, check_reach=False)(x=x)
    path = tmp_path / "estimator.pt"
    estimator.save(path)
    loaded = type(estimator).load(path, linear_model)
    assert torch.equal(loaded.psi_range, estimator.psi_range)
    with pytest.raises(lfi.SiteError, match="outside"):
        check_reach(scaled_prior_model(3.0), loaded, kwargs={"x": x})


def test_the_range_grows_with_training_and_skips_non_finite_rows():
    first = covered_range(torch.tensor([[0.0, 1.0], [2.0, -1.0], [torch.inf, 5.0]]))
    assert torch.equal(first, torch.tensor([[0.0, -1.0], [2.0, 1.0]]))
    assert torch.equal(covered_range(torch.tensor([[3.0, 0.0]]), first), torch.tensor([[0.0, -1.0], [3.0, 1.0]]))
    assert 0 < MARGIN < 1
    ratio, _ = quickly_trained(lfi.NeuralRatio(linear_model, "x"), lfi.NRE)
    before = ratio.psi_range.clone()
    wide = lfi.simulate(scaled_prior_model(3.0), 500, seed=1, progress=False)
    lfi.NRE(linear_model, ratio, progress=False, seed=0, max_epochs=1).train(wide)
    assert (ratio.psi_range[0] <= before[0]).all() and (ratio.psi_range[1] >= before[1]).all()
    assert not torch.equal(ratio.psi_range, before)
    lfi.surrogate(scaled_prior_model(3.0), ratio)(x=torch.zeros(3))  # now trained that wide


def test_where_the_simulator_failed_counts_as_trained_once_validity_is_learned():
    """The failed rows' parameters are covered by the validity classifier, which the surrogate
    multiplies in: a prior reaching there is not an extrapolation."""
    sims = lfi.simulate(fragile_model, 600, seed=0, progress=False)
    assert not sims.valid.all()
    valid_theta = sims.values["theta"][sims.valid]
    likelihood = lfi.NeuralLikelihood(fragile_model, "x", estimator="maf")
    lfi.NLE(fragile_model, likelihood, progress=False, seed=0, max_epochs=2).train(sims)
    assert likelihood.validity is not None
    assert valid_theta[:, 0].max() <= 0.5 < likelihood.psi_range[1, 0]  # beyond the last valid row
    lfi.surrogate(fragile_model, likelihood)(x=torch.zeros(2))
