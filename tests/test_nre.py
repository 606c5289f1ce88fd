"""Neural ratio estimation: a learned likelihood-to-evidence ratio of a Simulator site in the
model, so that NUTS samples prior x ratio (against analytic posteriors)."""

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st

from .models import linear_model, linear_posterior
from .test_nle import nuts


def trained_ratio(model, loss="nre-a") -> lfi.NeuralRatio:
    ratio = lfi.NeuralRatio(model, "x")
    sims = lfi.simulate(model, 5000, seed=0, progress=False)
    lfi.NRE(model, ratio, loss=loss, progress=False, seed=0).train(sims)
    return ratio


@pytest.mark.parametrize("loss,bound", [("nre-a", 0.55), ("bnre", 0.6)])
def test_nuts_on_prior_times_ratio_finds_the_analytic_posterior(loss, bound):
    x_o = torch.tensor([0.8, -0.4, 0.3])
    samples = nuts(lfi.surrogate(linear_model, trained_ratio(linear_model, loss)), x=x_o)
    reference = linear_posterior(x_o).sample((600,))
    assert c2st(samples, reference, seed=0) <= bound
    if loss == "bnre":  # balanced: not narrower than the posterior
        assert (samples.std(0) >= 0.9 * reference.std(0)).all()


def test_a_ratio_scores_but_does_not_simulate_and_losses_are_checked():
    ratio = lfi.NeuralRatio(linear_model, "x")
    with pytest.raises(lfi.NotFittedError):
        ratio(torch.zeros(2))
    with pytest.raises(ValueError, match="unknown loss"):
        lfi.NRE(linear_model, ratio, loss="nre-z")
    with pytest.raises(TypeError, match="NeuralRatio"):
        lfi.NRE(linear_model, lfi.NeuralLikelihood(linear_model))
    lfi.NRE(linear_model, ratio, progress=False, seed=0, max_epochs=1).train(
        lfi.simulate(linear_model, 200, seed=0, progress=False)
    )
    scored = ratio(torch.zeros(2))
    assert scored.log_prob(torch.zeros(3)).shape == () and scored.expand([4]).log_prob(torch.zeros(4, 3)).shape == (4,)
    with pytest.raises(NotImplementedError, match="cannot simulate"):
        scored.sample()
