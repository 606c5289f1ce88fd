"""The ArviZ export (to_inference_data, from_mcmc) under the installed ArviZ, 0.x or 1.x."""

import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr
from pyro.infer import MCMC, NUTS

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import ARVIZ_1, group, group_names, is_result

from .models import multi_model

pytestmark = pytest.mark.arviz

X_O = torch.tensor([0.5, 1.0, -0.2, 0.3, 0.0])


@pytest.fixture(scope="module")
def trained():
    sims = lfi.simulate(multi_model, 600, seed=0, progress=False)
    guide = lfi.NeuralPosterior(multi_model, estimator="mdn")
    lfi.NPE(multi_model, guide, progress=False, max_epochs=5, seed=0).train(sims)
    return guide, sims


def flat(variable) -> np.ndarray:
    """A variable's ``[chain, draw, ...]`` values with the chains end to end."""
    values = variable.values
    return values.reshape((-1,) + values.shape[2:])


def test_groups_dims_and_values(trained):
    guide, sims = trained
    idata = lfi.to_inference_data(
        guide, x=X_O, num_samples=300, posterior_predictive=True, prior=sims, seed=4,
        coords={"feature": np.arange(5)}, dims={"x": ["feature"]},
    )
    assert is_result(idata) and isinstance(idata, xr.DataTree) == ARVIZ_1
    assert set(group_names(idata)) == {
        "posterior", "sample_stats", "observed_data", "posterior_predictive", "prior", "prior_predictive"
    }
    post = group(idata, "posterior")
    assert post["u"].dims == ("chain", "draw", "u_dim_0") and list(post["chain"].values) == [0, 1, 2, 3]
    assert set(post.data_vars) == {"scale", "u", "v"}
    assert post["u"].shape == (4, 75, 2) and post["scale"].shape == (4, 75)  # 300 draws as 4 chains
    assert group(idata, "observed_data")["x"].dims == ("feature",)
    np.testing.assert_allclose(group(idata, "observed_data")["x"].values, X_O.numpy())
    predictive = group(idata, "posterior_predictive")
    assert predictive["x"].shape == (4, 75, 5)
    assert predictive["x"].dims == ("chain", "draw", "feature")
    assert group(idata, "prior")["u"].shape == (1, sims.num_valid, 2)
    assert group(idata, "prior_predictive")["x"].shape == (1, sims.num_valid, 5)
    assert all(group(idata, g).attrs["inference_library"] == "pyro_lfi" for g in group_names(idata))

    # the values are the guide's draws: same seed, same draws; log_q is their density
    torch.manual_seed(4)
    draws = guide.sample(300, x=X_O)
    np.testing.assert_allclose(flat(post["u"]), draws["u"].numpy(), rtol=1e-6)
    log_q = guide.log_prob(draws, x=X_O).detach().numpy()
    np.testing.assert_allclose(flat(group(idata, "sample_stats")["log_q"]), log_q, rtol=1e-4, atol=1e-4)
    # each predictive row was simulated at its own draw: x ~ N([u, v], scale^2)
    loc = np.concatenate([flat(post["u"]), flat(post["v"])], -1)
    resid = (flat(predictive["x"]) - loc) / flat(post["scale"])[:, None]
    assert abs(resid.std() - 1) < 0.1


def test_arviz_functions_work(trained, tmp_path):
    guide, _sims = trained
    idata = lfi.to_inference_data(guide, x=X_O, num_samples=200, posterior_predictive=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # independent draws as 4 chains: no shape warning
        summary = az.summary(idata)
    assert list(summary.index) == ["scale", "u[0]", "u[1]", "v[0]", "v[1]", "v[2]"]
    assert np.isfinite(summary["r_hat"]).all() and (summary["r_hat"] < 1.05).all()
    assert (summary["ess_bulk"] > 100).all()
    with pytest.raises(ValueError, match="num_chains"):
        lfi.to_inference_data(guide, x=X_O, num_samples=202, seed=0)
    az.plot_pair(idata, var_names=["u"])
    az.plot_ppc_dist(idata) if ARVIZ_1 else az.plot_ppc(idata, num_pp_samples=20)
    plt.close("all")
    path = tmp_path / "post.nc"
    idata.to_netcdf(path)
    assert group(az.from_netcdf(path), "posterior")["v"].shape == (4, 50, 3)


def test_batch_of_observations_is_refused(trained):
    guide, _ = trained
    with pytest.raises(lfi.ObservationError, match="one observation"):
        lfi.to_inference_data(guide, x=torch.stack([X_O, X_O]))


def test_a_model_argument_named_like_an_export_option_goes_through_model_kwargs():
    def model(x=None, prior=1.0):
        theta = pyro.sample("theta", dist.Normal(0.0, prior))
        return pyro.sample("x", lfi.Simulator(lambda t: t + 0.1 * torch.randn_like(t), theta), obs=x)

    guide = lfi.NeuralPosterior(model, estimator="mdn", components=1)
    lfi.NPE(model, guide, progress=False, max_epochs=2, seed=0).train(lfi.simulate(model, 200, seed=0, progress=False))
    idata = lfi.to_inference_data(guide, num_samples=20, posterior_predictive=True, seed=0,
                                  model_kwargs={"x": torch.tensor(0.5), "prior": 2.0})
    assert group(idata, "posterior")["theta"].shape == (4, 5)
    assert group(idata, "posterior_predictive")["x"].shape == (4, 5) and "prior" not in group_names(idata)


def gaussian_model(x=None):
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pyro.plate("obs", 3):
        return pyro.sample("x", dist.Normal(theta[..., 0], 1.0), obs=x)


def test_from_mcmc_keeps_chains_divergences_and_densities():
    x = torch.tensor([0.5, 1.0, 0.2])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*available_cpu.*")  # on 2 cores, one chain after the other
        sampler = MCMC(NUTS(gaussian_model), num_samples=20, warmup_steps=20, num_chains=2, disable_progbar=True)
        sampler.run(x=x)
    state = torch.get_rng_state()
    result = lfi.from_mcmc(sampler)  # the model's arguments as the run received them
    assert torch.equal(torch.get_rng_state(), state)  # the export draws nothing
    assert set(group_names(result)) == {"posterior", "sample_stats", "observed_data", "log_likelihood"}
    theta = sampler.get_samples(group_by_chain=True)["theta"]
    post, stats = group(result, "posterior"), group(result, "sample_stats")
    assert post["theta"].dims == ("chain", "draw", "theta_dim_0") and post["theta"].shape == (2, 20, 2)
    np.testing.assert_array_equal(post["theta"].values, theta.numpy())
    assert stats["diverging"].shape == (2, 20) and stats["diverging"].dtype == bool
    # lp is the log joint density of each draw, log_likelihood each observation's density
    flat_theta = theta.reshape(-1, 2)
    log_lik = dist.Normal(flat_theta[:, :1], 1.0).log_prob(x)
    lp = dist.Normal(0.0, 1.0).log_prob(flat_theta).sum(-1) + log_lik.sum(-1)
    np.testing.assert_allclose(stats["lp"].values.ravel(), lp.numpy(), rtol=1e-5)
    np.testing.assert_allclose(group(result, "log_likelihood")["x"].values.reshape(-1, 3), log_lik.numpy(), rtol=1e-5)
    np.testing.assert_allclose(group(result, "observed_data")["x"].values, x.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two chains of 20 draws: no shape warning
        assert np.isfinite(az.summary(result)["r_hat"]).all()
    assert "log_likelihood" not in group_names(lfi.from_mcmc(sampler, x=x, log_likelihood=False))


def test_from_mcmc_without_a_vectorizable_model_warns_and_keeps_the_draws():
    def unplated(x=None):  # a batch dim outside any plate: the draws cannot be vectorized over it
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        return pyro.sample("x", dist.Normal(theta * torch.ones(3), 1.0).to_event(1), obs=x)

    sampler = MCMC(NUTS(unplated), num_samples=10, warmup_steps=10, disable_progbar=True)
    sampler.run(x=torch.zeros(3))
    with pytest.warns(UserWarning, match="no lp and no log_likelihood"):
        result = lfi.from_mcmc(sampler)
    assert set(group_names(result)) == {"posterior", "sample_stats", "observed_data"}
    assert group(result, "posterior")["theta"].shape == (1, 10)
