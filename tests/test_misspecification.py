"""The misspecification check: MMD in the trained guide's embedding against prior-predictive simulations."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import MisspecificationResult, misspecification
from pyro_lfi.errors import NotFittedError, ObservationError

from .models import linear_model, linear_simulator
from .trained_guides import linear_guide  # noqa: F401 (a fixture)

OPTIONS = {"num_simulations": 500, "num_null": 100}


def failing_model(threshold):
    """``linear_model`` with every simulation whose ``theta[0] > threshold`` failing (NaN)."""

    def simulator(theta):
        x = linear_simulator(theta)
        x[theta[..., 0] > threshold] = float("nan")
        return x

    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return pyro.sample("x", lfi.Simulator(simulator, theta), obs=x)

    return model


@pytest.fixture
def guide(linear_guide):  # noqa: F811
    return linear_guide


@pytest.fixture(scope="module")
def x_model():
    """Observations the model itself produced (a seed the guide's training did not use)."""
    return lfi.simulate(linear_model, 4, seed=123, progress=False)["x"]


def test_an_observation_from_the_model_is_not_flagged(guide, x_model):
    result = misspecification(guide, x=x_model[0], **OPTIONS)
    assert isinstance(result, MisspecificationResult)
    assert result.pvalue > 0.05 and result.passed()
    assert result.null.shape == (100,) and result.num_observations == 1 and result.num_reference == 500
    assert 0 < result.pvalue <= 1 and result.bandwidth > 0


def test_an_observation_far_outside_the_model_is_flagged(guide, x_model):
    shifted = x_model[0] + 20.0  # the data's scale is about 1.5: many standard deviations away
    result = misspecification(guide, x=shifted, **OPTIONS)
    assert result.pvalue < 0.05 and not result.passed()
    assert result.mmd > result.null.max()
    assert result.pvalue == pytest.approx(1 / 101)  # the smallest p-value with 100 null draws


def test_a_batch_of_observations_is_compared_as_one_set(guide, x_model):
    good = misspecification(guide, x=x_model[:3], **OPTIONS)
    bad = misspecification(guide, x=x_model[:3] + 5.0, **OPTIONS)
    assert good.num_observations == 3 and good.passed()
    assert not bad.passed() and bad.mmd > bad.null.max()
    # the null sets are as large as the observation: their statistic shrinks with m
    assert good.null.mean() < misspecification(guide, x=x_model[0], **OPTIONS).null.mean()


def test_the_model_is_passed_like_the_other_diagnostics(guide, x_model):
    a = misspecification(guide, linear_model, x=x_model[1], **OPTIONS)
    b = misspecification(guide, x=x_model[1], **OPTIONS)
    assert a.mmd == b.mmd and a.pvalue == b.pvalue


def test_the_seed_fixes_the_result_and_the_global_rng_is_untouched(guide, x_model):
    pyro.set_rng_seed(7)
    state = pyro.util.get_rng_state()
    a = misspecification(guide, x=x_model[2], seed=3, **OPTIONS)
    after = pyro.util.get_rng_state()
    torch.testing.assert_close(after["torch"], state["torch"])
    assert np.array_equal(after["numpy"][1], state["numpy"][1]) and after["random"] == state["random"]
    b = misspecification(guide, x=x_model[2], seed=3, **OPTIONS)
    c = misspecification(guide, x=x_model[2], seed=4, **OPTIONS)
    assert a.mmd == b.mmd and np.array_equal(a.null, b.null) and a.pvalue == b.pvalue
    assert not np.array_equal(a.null, c.null)


def test_an_untrained_guide_raises_not_fitted(x_model):
    with pytest.raises(NotFittedError, match="NPE"):
        misspecification(lfi.NeuralPosterior(linear_model), x=x_model[0], **OPTIONS)


def test_bad_sizes_and_shapes_are_refused(guide, x_model):
    with pytest.raises(ValueError, match="num_simulations"):
        misspecification(guide, x=x_model[0], num_simulations=1)
    with pytest.raises(ValueError, match="num_null"):
        misspecification(guide, x=x_model[0], num_null=0)
    with pytest.raises(ValueError, match="no valid simulations"), pytest.warns(UserWarning, match="invalid"):
        misspecification(guide, failing_model(-float("inf")), x=x_model[0], **OPTIONS)
    with pytest.raises(ValueError, match="too few"):  # about half of the 102 rows are valid
        misspecification(guide, failing_model(0.0), x=x_model[0], num_simulations=2, num_null=100)
    with pytest.raises(ObservationError, match="shape"):
        misspecification(guide, x=torch.zeros(4), **OPTIONS)


def test_plot_returns_an_axes(guide, x_model):
    result = misspecification(guide, x=x_model[0], **OPTIONS)
    ax = result.plot()
    assert isinstance(ax, matplotlib.axes.Axes) and ax.get_xlabel()
    plt.close(ax.figure)
    fig, given = plt.subplots()
    assert result.plot(ax=given) is given
    plt.close(fig)
