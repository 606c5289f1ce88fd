"""sample_posterior: NUTS chains started by importance resampling of prior draws, so that every
mode of a multi-modal posterior gets its share (against exact posteriors)."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import group
from pyro_lfi.baselines import tractable
from pyro_lfi.diagnostics import c2st
from pyro_lfi.infer.candidates import WarmStart, log_likelihood
from pyro_lfi.infer.resampling import space_filling_order, systematic_resample
from pyro_lfi.seeding import seeded

from .models import NOISE, A, linear_model, linear_posterior

# -- x_t ~ N(theta^2, SIGMA^2) per component: modes at theta = +-sqrt(x), weighted by the prior ----------------

LOC, SIGMA = 0.3, 0.25  # the prior N(0.3, 1) favours the positive root: the modes have unequal mass


def squares_model(x=None, trials=2, dim=2):
    theta = pyro.sample("theta", dist.Normal(LOC, 1.0).expand([dim]).to_event(1))
    with pyro.plate("trials", trials):
        return pyro.sample("x", dist.Normal(theta**2, SIGMA).to_event(1), obs=x)


X_SQUARES = torch.tensor([[1.1, 2.0], [0.9, 2.5]])  # modes near theta_1 = +-1, theta_2 = +-1.5
GRID = torch.linspace(-4.0, 4.0, 80_001, dtype=torch.float64)


def exact_squares(x: torch.Tensor, num: int, seed: int = 7) -> torch.Tensor:
    """Exact draws: the posterior factorizes over components; each by inverse CDF on a fine grid."""
    columns = []
    with seeded(seed):
        for j in range(x.shape[-1]):
            log_p = dist.Normal(LOC, 1.0).log_prob(GRID) + dist.Normal(GRID[:, None] ** 2, SIGMA).log_prob(
                x[:, j].double()
            ).sum(-1)
            index = torch.multinomial(torch.softmax(log_p, 0), num, replacement=True)
            columns.append(GRID[index] + (torch.rand(num, dtype=torch.float64) - 0.5) * (GRID[1] - GRID[0]))
    return torch.stack(columns, -1).float()


def mode_masses(theta: torch.Tensor) -> torch.Tensor:
    """The share of draws in each orthant (sign pattern), ``[2**dim]``."""
    code = ((theta > 0).long() * 2 ** torch.arange(theta.shape[-1])).sum(-1)
    return torch.bincount(code, minlength=2 ** theta.shape[-1]).float() / len(theta)


def single_default_chain(model, num_samples: int, **data) -> torch.Tensor:
    """One NUTS chain from Pyro's default init (uniform in (-2, 2)): what the resampled starts replace."""
    pyro.set_rng_seed(1)
    mcmc = MCMC(NUTS(model), num_samples=num_samples, warmup_steps=100, disable_progbar=True)
    mcmc.run(**data)
    return mcmc.get_samples()["theta"]


def test_four_modes_get_their_share_where_a_single_chain_finds_one():
    exact = mode_masses(exact_squares(X_SQUARES, 20_000))  # about [0.10, 0.19, 0.25, 0.46]
    assert exact.min() > 0.09
    samples = lfi.posterior_chains(
        squares_model, 800, x=X_SQUARES, num_chains=16, warmup_steps=100, num_candidates=50_000, seed=0
    )
    assert samples.chains["theta"].shape == (16, 50, 2)
    masses = mode_masses(samples.get_samples()["theta"])
    # 16 chains split the draws in steps of 1/16; the candidates' estimate of each mode's mass
    # and chains that cross between modes add a few percent more
    assert (masses - exact).abs().max() <= 0.1, (masses, exact)
    single = mode_masses(single_default_chain(squares_model, 400, x=X_SQUARES))
    assert (single - exact).abs().max() > 0.4  # one chain, one mode


def test_two_modes_match_exact_draws_by_c2st():
    x = torch.tensor([[1.2], [0.8], [1.1]])  # modes near +-1, masses about 0.68 and 0.32
    exact = exact_squares(x, 1000)
    draws = lfi.sample_posterior(
        squares_model, 1000, x=x, trials=3, dim=1, num_chains=10, warmup_steps=100, num_candidates=20_000, seed=0
    )["theta"]
    assert draws.shape == (1000, 1)
    assert c2st(draws, exact, seed=0) <= 0.55
    single = single_default_chain(squares_model, 1000, x=x, trials=3, dim=1)
    assert c2st(single, exact, seed=0) > 0.6


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_linear_gaussian_matches_the_analytic_posterior(chain_method):
    x_o = torch.tensor([0.8, -0.6, 0.3])
    model = tractable(linear_model, {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)})
    draws = lfi.sample_posterior(model, 1000, x=x_o, num_chains=4, warmup_steps=150, seed=0, chain_method=chain_method)
    assert set(draws) == {"theta"} and draws["theta"].shape == (1000, 2)
    exact = linear_posterior(x_o)
    with seeded(2):
        reference = exact.sample((1000,))
    assert c2st(draws["theta"], reference, seed=0) <= 0.55
    torch.testing.assert_close(draws["theta"].mean(0), exact.mean, atol=0.05, rtol=0)


def test_a_learned_likelihood_surrogate_samples_near_the_analytic_posterior():
    likelihood = lfi.NeuralLikelihood(linear_model, "x", estimator="maf")
    sims = lfi.simulate(linear_model, 1000, seed=0, progress=False)
    lfi.NLE(linear_model, likelihood, progress=False, seed=0, max_epochs=40).train(sims)
    x_o = torch.tensor([0.8, -0.4, 0.3])
    surrogate = lfi.surrogate(linear_model, likelihood)
    draws = lfi.sample_posterior(surrogate, 400, x=x_o, num_chains=2, warmup_steps=100, seed=0)
    with seeded(2):
        reference = linear_posterior(x_o).sample((400,))
    assert c2st(draws["theta"], reference, seed=0) <= 0.6  # 1000 simulations, 400 draws a side
    # traced by the JIT: the network's parameters leave autograd for the run and come back after
    traced = lfi.sample_posterior(surrogate, 400, x=x_o, num_chains=2, warmup_steps=100, seed=0,
                                  kernel_kwargs={"jit_compile": True})
    assert c2st(traced["theta"], reference, seed=0) <= 0.6
    assert all(parameter.requires_grad for parameter in likelihood.parameters())
    # the same chain runner serves the NUTS baseline
    baseline = lfi.baselines.mcmc(surrogate, x=x_o, num_samples=100, warmup_steps=50,
                                  kernel_kwargs={"jit_compile": True})
    assert group(baseline, "posterior")["theta"].shape == (1, 100, 2)
    assert all(parameter.requires_grad for parameter in likelihood.parameters())


def test_chains_export_ess_and_reproducibility():
    x_o = torch.tensor([0.8, -0.6, 0.3])
    model = tractable(linear_model, {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)})
    state = pyro.util.get_rng_state()
    first = lfi.posterior_chains(model, 200, x=x_o, num_chains=2, warmup_steps=50, seed=3)
    assert torch.equal(pyro.util.get_rng_state()["torch"], state["torch"])  # the global RNG is untouched
    second = lfi.posterior_chains(model, 200, x=x_o, num_chains=2, warmup_steps=50, seed=3)
    torch.testing.assert_close(first.chains, second.chains, rtol=0, atol=0)
    other = lfi.posterior_chains(model, 200, x=x_o, num_chains=2, warmup_steps=50, seed=4)
    assert not torch.equal(first.chains["theta"], other.chains["theta"])
    assert first.starts["theta"].shape == (2, 2) and first.sampling_time > 0
    idata = lfi.from_mcmc(first)
    posterior = group(idata, "posterior")
    assert posterior["theta"].shape == (2, 100, 2) and posterior.attrs["sampling_time"] == first.sampling_time
    assert set(group(idata, "sample_stats").data_vars) == {"diverging", "lp"}
    assert group(idata, "log_likelihood")["x"].shape == (2, 100)
    ess = first.ess()["theta"]
    assert ess.shape == (2,) and (ess > 20).all() and (ess < 400).all()
    assert first.ess_per_second() == pytest.approx(float(ess.min()) / first.sampling_time)


@pytest.mark.arviz  # computed by ArviZ, 0.x or 1.x
def test_ess_sums_each_chains_own_effective_sample_size():
    torch.manual_seed(0)
    independent = lfi.PosteriorSamples({"a": torch.randn(4, 500)}, sampling_time=2.0)
    assert 1600 < float(independent.ess()["a"]) < 2400
    rho, noise = 0.9, torch.randn(4, 500)
    correlated = torch.zeros(4, 500)
    for t in range(1, 500):  # AR(1): ESS = n (1 - rho) / (1 + rho), about 105 of 2000
        correlated[:, t] = rho * correlated[:, t - 1] + noise[:, t]
    assert 50 < float(lfi.PosteriorSamples({"a": correlated}, sampling_time=1.0).ess()["a"]) < 200
    # chains far apart (two modes) do not lower the within-chain ESS
    apart = torch.randn(4, 500) + torch.tensor([-10.0, -10.0, 10.0, 10.0])[:, None]
    assert float(lfi.PosteriorSamples({"a": apart}, sampling_time=1.0).ess()["a"]) > 1600
    # 20 short chains of 20 independent draws: positive, at most ArviZ's cap of n log10(n) each
    short = lfi.PosteriorSamples({"a": torch.randn(20, 20, 3)}, sampling_time=1.0).ess()["a"]
    assert short.shape == (3,) and (short > 100).all() and (short < 20 * 20 * math.log10(20)).all()


def test_resampling_splits_the_chains_by_mass_along_the_space_filling_order():
    torch.manual_seed(0)
    points = torch.cat([torch.randn(5000, 2) * 0.1 + torch.tensor(c) for c in ([-1, -1], [1, -1], [-1, 1], [1, 1])])
    points = points[torch.randperm(len(points))]
    log_w = torch.zeros(len(points))
    log_w[(points[:, 0] > 0) & (points[:, 1] > 0)] = torch.tensor(3.0).log()  # mass 0.5 there, 1/6 elsewhere
    order = space_filling_order(points, log_w)
    for _ in range(20):
        chosen = points[systematic_resample(log_w, 12, order)]
        counts = torch.bincount(((chosen > 0).long() * torch.tensor([1, 2])).sum(-1), minlength=4)
        assert counts.tolist() in ([2, 2, 2, 6],), counts  # 12 x (1/6, 1/6, 1/6, 1/2), exactly


def test_a_model_that_does_not_vectorize_falls_back_to_one_run_per_candidate():
    def scalar_model(x=None):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        loc = theta**2 if theta < 10 else theta  # one value per run: a batch of thetas raises here
        return pyro.sample("x", dist.Normal(loc, 0.3), obs=x)

    with pytest.warns(UserWarning) as caught:
        draws = lfi.sample_posterior(scalar_model, 100, x=torch.tensor(1.0), num_chains=2, warmup_steps=30,
                                     num_candidates=200, seed=0)
    messages = " ".join(str(w.message) for w in caught)
    assert "one run at a time" in messages and "running the chains one after another" in messages
    assert draws["theta"].shape == (100,)


def test_vectorized_chains_are_independent_copies_in_one_trajectory():
    """Each chain keeps its own start and its own draws; a hierarchy's plates stay right of the chains'."""

    def hierarchy(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("units", 3, dim=-2):
            theta = pyro.sample("theta", dist.Normal(mu, 1.0))
            with pyro.plate("trials", 4, dim=-1):
                return pyro.sample("x", dist.Normal(theta, 0.5), obs=x)

    x = torch.tensor([[-1.0], [0.0], [2.0]]) + 0.5 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    samples = lfi.posterior_chains(hierarchy, 300, x=x, num_chains=3, warmup_steps=100, seed=0)
    assert samples.chains["mu"].shape == (3, 100) and samples.chains["theta"].shape == (3, 100, 3, 1)
    assert torch.equal(samples.chains["theta"][:, 0] != samples.chains["theta"][:, 1], torch.ones(3, 3, 1).bool())
    means = samples.chains["theta"].mean(1).squeeze(-1)  # [chain, unit]: every chain finds each unit's mean
    assert (means.std(0) < 0.3).all() and (means[:, 2] - means[:, 0] > 2).all()
    exact = lfi.sample_posterior(hierarchy, 300, x=x, num_chains=3, warmup_steps=100, seed=0, chain_method="sequential")
    assert c2st(samples.get_samples()["mu"][:, None], exact["mu"][:, None], seed=0) <= 0.6


def test_clear_errors():
    x_o = torch.tensor([0.8, -0.6, 0.3])
    model = tractable(linear_model, {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)})
    with pytest.raises(ValueError, match="num_samples=10 draws do not split into num_chains=4"):
        lfi.sample_posterior(model, 10, x=x_o)
    with pytest.raises(lfi.SiteError, match=r"\['x'\] are Simulator sites.*surrogate"):
        lfi.sample_posterior(linear_model, 8, x=x_o)
    with pytest.raises(lfi.ObservationError, match="observes no site"):
        lfi.sample_posterior(model, 8)
    with pytest.raises(lfi.SiteError, match="no latent sample sites"):
        lfi.sample_posterior(lambda x=None: pyro.sample("x", dist.Normal(0.0, 1.0), obs=x), 8, x=torch.tensor(0.0))
    with pytest.raises(ValueError, match="cannot set init_strategy"):
        lfi.sample_posterior(model, 8, x=x_o, kernel_kwargs={"init_strategy": None})
    with pytest.raises(ValueError, match="unknown chain_method 'parallel'"):
        lfi.sample_posterior(model, 8, x=x_o, chain_method="parallel")

    def impossible():
        theta = pyro.sample("theta", dist.Uniform(0.0, 1.0))
        pyro.factor("above_two", torch.where(theta > 2.0, 0.0, -torch.inf))  # an observed site

    with warnings.catch_warnings(), pytest.raises(lfi.ObservationError, match="zero likelihood at every one of 100"):
        warnings.simplefilter("ignore")
        lfi.sample_posterior(impossible, 8, num_candidates=100)


def test_log_likelihood_at_given_values_is_the_models():
    theta = torch.tensor([[0.5, -1.0], [1.5, 0.2], [-2.0, 2.0]])
    exact = dist.Normal(theta[:, None] ** 2, SIGMA).log_prob(X_SQUARES).sum((-1, -2))
    assert torch.allclose(log_likelihood(squares_model, {"theta": theta}, (), {"x": X_SQUARES}), exact)
    with pytest.raises(lfi.SiteError, match=r"no values for the latent site\(s\) \['theta'\]"):
        log_likelihood(squares_model, {"other": theta}, (), {"x": X_SQUARES})


def test_a_warm_start_is_reweighted_to_the_current_posterior():
    """Draws of an earlier approximation p L' that gives both modes equal mass: reweighted by L / L',
    the chains start in the current posterior's modes in proportion to their masses (0.68, 0.32)."""
    x = torch.tensor([[1.2], [0.8], [1.1]])
    data = {"x": x, "trials": 3, "dim": 1}
    exact = exact_squares(x, 40_000)
    positive = mode_masses(exact)[1]  # about 0.68
    tilt = torch.where(exact[:, 0] > 0, (1 - positive) / positive, torch.tensor(1.0)).log()  # L' = L x tilt
    with seeded(3):
        earlier = exact[torch.multinomial(tilt.exp(), 4000, replacement=True)]
    assert abs(mode_masses(earlier)[1] - 0.5) < 0.03
    earlier_tilt = torch.where(earlier[:, 0] > 0, (1 - positive) / positive, torch.tensor(1.0)).log()
    earlier_log_likelihood = log_likelihood(squares_model, {"theta": earlier}, (), data) + earlier_tilt
    warm = WarmStart({"theta": earlier}, earlier_log_likelihood)
    samples = lfi.posterior_chains(squares_model, 40, num_chains=40, warmup_steps=1, seed=0, warm_start=warm, **data)
    starts_positive = int((samples.starts["theta"][:, 0] > 0).sum())
    assert abs(starts_positive - 40 * positive) <= 1.5, (starts_positive, positive)
    with pytest.raises(ValueError, match="as many values at every site as log likelihoods"):
        WarmStart({"theta": earlier}, earlier_log_likelihood[:10])
