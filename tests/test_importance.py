"""importance_posterior: adaptive importance sampling of a tractable model's posterior, against
exact posteriors (unimodal, four unequal modes, constrained sites), and its diagnostics."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import pareto_k
from pyro_lfi.baselines import tractable
from pyro_lfi.diagnostics import c2st
from pyro_lfi.errors import SiteError
from pyro_lfi.infer.candidates import WarmStart, log_densities
from pyro_lfi.infer.importance import kish_ess
from pyro_lfi.seeding import seeded

from .models import NOISE, A, linear_model, linear_posterior
from .test_posterior_sampling import X_SQUARES, exact_squares, mode_masses, squares_model

LINEAR = tractable(linear_model, {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)})
X_O = torch.tensor([0.8, -0.6, 0.3])


def test_linear_gaussian_matches_the_analytic_posterior():
    result = lfi.importance_posterior(LINEAR, 2000, x=X_O, seed=0)
    assert set(result.samples) == {"theta"} and result.samples["theta"].shape == (2000, 2)
    with seeded(2):
        reference = linear_posterior(X_O).sample((2000,))
    assert c2st(result.samples["theta"], reference, seed=0) <= 0.55
    assert result.ess >= 4000 and result.pareto_k < 0.7  # the default min_ess: twice the draws
    assert 1000 < result.effective_draws < 2000 and result.ess_per_second() > 0
    assert len(torch.unique(result.samples["theta"], dim=0)) > 1500  # resampled from many more


def test_four_unequal_modes_get_their_exact_shares():
    exact = mode_masses(exact_squares(X_SQUARES, 20_000))  # about [0.10, 0.19, 0.25, 0.46]
    result = lfi.importance_posterior(squares_model, 4000, x=X_SQUARES, seed=0)
    masses = mode_masses(result.samples["theta"])
    assert (masses - exact).abs().max() <= 0.03, (masses, exact)  # 4,000 draws: sd of a share <= 0.008
    assert c2st(result.samples["theta"], exact_squares(X_SQUARES, 4000), seed=0) <= 0.55


def bounded_model(x=None):
    rate = pyro.sample("rate", dist.Exponential(1.0))
    u = pyro.sample("u", dist.Uniform(-1.0, 2.0).expand([2]).to_event(1))
    return pyro.sample("x", dist.Normal(torch.cat([rate[..., None], u], -1), 0.5).to_event(1), obs=x)


def exact_bounded(x: torch.Tensor, num: int) -> torch.Tensor:
    """Exact draws of ``bounded_model``'s posterior, independent over coordinates: each a normal
    cut by its prior's support (times exp(-rate) for the rate), by inverse CDF on a fine grid."""
    columns = []
    with seeded(5):
        for (low, high, prior), value in zip([(0.0, 6.0, dist.Exponential(1.0))] + 2 * [(-1.0, 2.0, dist.Uniform(
                -1.0, 2.0))], x.double()):
            grid = torch.linspace(low, high, 200_001, dtype=torch.float64)[1:-1]
            log_p = prior.log_prob(grid) + dist.Normal(grid, 0.5).log_prob(value)
            columns.append(grid[torch.multinomial(torch.softmax(log_p, 0), num, replacement=True)])
    return torch.stack(columns, -1).float()


def test_constrained_sites_stay_in_their_supports_and_match_the_exact_posterior():
    x_o = torch.tensor([0.1, 1.8, -0.8])  # each coordinate's posterior cut by its support
    draws = lfi.importance_posterior(bounded_model, 2000, x=x_o, seed=0).samples
    assert draws["rate"].shape == (2000,) and draws["u"].shape == (2000, 2)
    assert (draws["rate"] > 0).all() and ((draws["u"] > -1) & (draws["u"] < 2)).all()
    flat = torch.cat([draws["rate"][:, None], draws["u"]], -1)
    assert c2st(flat, exact_bounded(x_o, 2000), seed=0) <= 0.55


def test_log_densities_are_the_models_prior_and_likelihood():
    theta = torch.randn(5, 2)
    log_prior, log_likelihood = log_densities(LINEAR, {"theta": theta}, (), {"x": X_O})
    torch.testing.assert_close(log_prior, dist.Normal(0.0, 1.0).log_prob(theta).sum(-1))
    torch.testing.assert_close(log_likelihood, dist.Normal(theta @ A.T, NOISE).log_prob(X_O).sum(-1))


def test_a_warm_start_and_a_seed_make_the_draws_reproducible():
    warm = WarmStart({"theta": linear_posterior(X_O).sample((500,))}, torch.zeros(500))  # flat: an exact start
    first, second = (lfi.importance_posterior(LINEAR, 500, x=X_O, seed=3, warm_start=warm, adapt_steps=1)
                     for _ in range(2))
    assert torch.equal(first.samples["theta"], second.samples["theta"])
    assert first.num_evaluations == 500 + 2 * 10_000  # the start, one adaptation, one final population


def test_kish_ess_and_pareto_k_tell_good_weights_from_heavy_tailed_ones():
    assert kish_ess(torch.zeros(100)) == pytest.approx(100)
    assert kish_ess(torch.tensor([0.0, -float("inf"), float("nan")])) == pytest.approx(1)
    rng = np.random.default_rng(0)
    assert pareto_k(0.1 * rng.normal(size=10_000)) < 0.5
    assert pareto_k(np.log(rng.pareto(1.0, size=10_000))) > 0.8  # weights of infinite mean: k = 1


@pytest.mark.arviz
def test_pareto_k_reads_the_right_tail_under_either_arviz():
    rng = np.random.default_rng(1)
    log_weights = np.log1p(rng.pareto(1.5, size=20_000))  # weights 1 + Lomax: a Pareto tail of shape 1 / 1.5
    assert pareto_k(log_weights) == pytest.approx(1 / 1.5, abs=0.1)
    assert pareto_k(-log_weights) < 0.3  # their inverses are bounded by 1


def test_an_unreliable_proposal_is_reported_and_bad_input_refused():
    narrow = tractable(linear_model, {"x": lambda theta: dist.Normal(theta @ A.T, 0.01).to_event(1)})
    with pytest.warns(UserWarning, match="ESS|k-hat"):  # no adaptation, a tiny population, one batch
        lfi.importance_posterior(narrow, 1000, x=X_O, num_candidates=200, adapt_steps=0, max_candidates=0, seed=0)
    with pytest.raises(ValueError, match="num_samples"):
        lfi.importance_posterior(LINEAR, 0, x=X_O)
    with pytest.raises(ValueError, match="defensive"):
        lfi.importance_posterior(LINEAR, 10, x=X_O, defensive=1.0)
    with pytest.raises(SiteError, match="Simulator"):
        lfi.importance_posterior(linear_model, 10, x=X_O)
