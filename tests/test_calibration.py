"""SBC, expected coverage and TARP on the linear-Gaussian NPE and a deliberately overconfident copy."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.distributions import AffineTransform, TransformedDistribution

import pyro_lfi as lfi
from pyro_lfi.diagnostics import calibration_draws, expected_coverage, sbc, tarp

from .models import linear_model, linear_posterior
from .trained_guides import linear_guide  # noqa: F401 (a fixture)


@pytest.fixture
def guide(linear_guide):  # noqa: F811
    return linear_guide


class StandIn:
    """A guide with another ``condition(x)``; everything else is the wrapped guide's."""

    def __init__(self, guide):
        self.guide = guide

    def __getattr__(self, name):
        return getattr(self.guide, name)


class Overconfident(StandIn):
    """The trained guide with every draw pulled towards its posterior mean by ``factor``:
    q'(z | x) is q(z | x) under z -> m(x) + factor (z - m(x)), m(x) estimated from 500 draws."""

    def __init__(self, guide, factor=0.5):
        super().__init__(guide)
        self.factor = factor

    def conditional(self, x):
        q = self.guide.conditional(x)
        mean = q.sample((500,)).mean(0)
        shrink = AffineTransform(mean * (1 - self.factor), self.factor, event_dim=1)
        return TransformedDistribution(q, [shrink])


class Exact(StandIn):
    """What a perfect guide would be: the trained guide's site layout with the model's exact
    posterior in place of its estimate (``linear_model``'s latent space is unconstrained)."""

    def conditional(self, x):
        return linear_posterior(x)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def test_calibration_draws_shapes_and_seed(guide):
    a = calibration_draws(guide, linear_model, num_simulations=50, num_posterior_samples=7, seed=3,
                          batch_size=20, log_prob=True)
    b = calibration_draws(guide, linear_model, num_simulations=50, num_posterior_samples=7, seed=3,
                          batch_size=20)
    c = calibration_draws(guide, linear_model, num_simulations=50, num_posterior_samples=7, seed=4)
    assert a.truth["theta"].shape == (50, 2)
    assert a.draws["theta"].shape == (7, 50, 2)
    assert a.log_q_truth.shape == (50,) and a.log_q_draws.shape == (7, 50)
    torch.testing.assert_close(a.draws["theta"], b.draws["theta"])  # the seed fixes the draws
    assert not torch.allclose(a.truth["theta"], c.truth["theta"])
    # the batched log densities are those of the guide at each observation
    x = lfi.simulate(linear_model, 50, seed=3, progress=False)["x"]
    torch.testing.assert_close(a.log_q_truth[:5], guide.log_prob({"theta": a.truth["theta"][:5]}, x=x[:5]))


@pytest.mark.arviz  # its plot
def test_sbc_passes_for_trained_guide_and_fails_when_overconfident(guide):
    good = sbc(guide, linear_model, num_simulations=500, num_posterior_samples=100, seed=1)
    assert good.ranks["theta"].shape == (500, 2)
    assert good.ranks["theta"].min() >= 0 and good.ranks["theta"].max() <= 100
    assert good.pvalues["theta"].shape == (2,)
    assert good.passed(0.01), good.pvalues
    bad = sbc(Overconfident(guide), linear_model, num_simulations=500, num_posterior_samples=100, seed=1)
    assert not bad.passed(0.01), bad.pvalues
    assert bad.pvalues["theta"].max() < 1e-6
    # overconfident: ranks pile up at both ends
    ends = np.mean((bad.ranks["theta"] < 10) | (bad.ranks["theta"] > 90))
    assert ends > 0.4, ends
    chi2 = sbc(Overconfident(guide), linear_model, num_simulations=500, num_posterior_samples=100, seed=1,
               test="chi2")
    assert not chi2.passed(0.01)
    assert _png(good.plot()).startswith(b"\x89PNG")


def test_expected_coverage_nominal_and_overconfident(guide):
    good = expected_coverage(guide, linear_model, num_simulations=500, num_posterior_samples=200, seed=2)
    assert good.coverage.shape == good.levels.shape == (21,)
    assert good.max_error() < 0.08, good.coverage
    assert good.pvalue() > 0.01
    bad = expected_coverage(Overconfident(Exact(guide)), linear_model, num_simulations=500,
                            num_posterior_samples=200, seed=2)
    # halving the exact 2-d Gaussian's scale: the 90% HPD region covers P(chi2_2 < 4.6 / 4) = 0.44
    level = int(np.argmin(np.abs(bad.levels - 0.9)))
    assert abs(bad.coverage[level] - 0.44) < 0.08, bad.coverage[level]
    assert bad.pvalue() < 1e-6
    assert _png(good.plot()).startswith(b"\x89PNG")


def test_tarp_nominal_and_overconfident(guide):
    good = tarp(guide, linear_model, num_simulations=500, num_posterior_samples=200, seed=4)
    assert good.max_error() < 0.08, good.coverage
    bad = tarp(Overconfident(guide), linear_model, num_simulations=500, num_posterior_samples=200, seed=4)
    assert bad.max_error() > 0.15, bad.coverage
    assert bad.pvalue() < 1e-6
    assert _png(bad.plot()).startswith(b"\x89PNG")


def test_bad_arguments(guide):
    with pytest.raises(ValueError, match="test must be"):
        sbc(guide, linear_model, num_simulations=10, test="anderson")
    with pytest.raises(ValueError, match="levels"):
        expected_coverage(guide, linear_model, num_simulations=10, levels=[0.5, 1.5])
    with pytest.raises(lfi.NotFittedError):
        sbc(lfi.NeuralPosterior(linear_model), linear_model, num_simulations=10)


@pytest.mark.arviz  # its plot
def test_sbc_and_coverage_on_several_sites_of_different_supports():
    from .models import multi_model

    sims = lfi.simulate(multi_model, 200, seed=0, progress=False)
    untrained = lfi.NeuralPosterior(multi_model).build(sims)  # shapes only: calibration is not the point
    result = sbc(untrained, multi_model, num_simulations=100, num_posterior_samples=20, seed=0)
    assert {n: r.shape for n, r in result.ranks.items()} == {"scale": (100,), "u": (100, 2), "v": (100, 3)}
    assert {n: p.shape for n, p in result.pvalues.items()} == {"scale": (), "u": (2,), "v": (3,)}
    fig = result.plot()
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [
        "scale", "u[0]", "u[1]", "v[0]", "v[1]", "v[2]"
    ]
    plt.close(fig)
    coverage = expected_coverage(untrained, multi_model, num_simulations=50, num_posterior_samples=20, seed=0)
    assert np.all((coverage.credibility >= 0) & (coverage.credibility <= 1))
    assert np.all(np.diff(coverage.coverage) >= 0)  # coverage grows with the credible level
