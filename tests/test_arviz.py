import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi

from .models import multi_model

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
    assert set(idata.groups()) == {
        "posterior", "sample_stats", "observed_data", "posterior_predictive", "prior", "prior_predictive"
    }
    post = idata.posterior
    assert set(post.data_vars) == {"scale", "u", "v"}
    assert post["u"].shape == (4, 75, 2) and post["scale"].shape == (4, 75)  # 300 draws as 4 chains
    assert idata.observed_data["x"].dims == ("feature",)
    np.testing.assert_allclose(idata.observed_data["x"].values, X_O.numpy())
    assert idata.posterior_predictive["x"].shape == (4, 75, 5)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "feature")
    assert idata.prior["u"].shape == (1, sims.num_valid, 2)
    assert idata.prior_predictive["x"].shape == (1, sims.num_valid, 5)

    # the values are the guide's draws: same seed, same draws; log_q is their density
    torch.manual_seed(4)
    draws = guide.sample(300, x=X_O)
    np.testing.assert_allclose(flat(post["u"]), draws["u"].numpy(), rtol=1e-6)
    log_q = guide.log_prob(draws, x=X_O).detach().numpy()
    np.testing.assert_allclose(flat(idata.sample_stats["log_q"]), log_q, rtol=1e-4, atol=1e-4)
    # each predictive row was simulated at its own draw: x ~ N([u, v], scale^2)
    loc = np.concatenate([flat(post["u"]), flat(post["v"])], -1)
    resid = (flat(idata.posterior_predictive["x"]) - loc) / flat(post["scale"])[:, None]
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
    az.plot_ppc(idata, num_pp_samples=20)
    plt.close("all")
    path = tmp_path / "post.nc"
    idata.to_netcdf(path)
    assert az.from_netcdf(path).posterior["v"].shape == (4, 50, 3)


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
    assert idata.posterior["theta"].shape == (4, 5)
    assert idata.posterior_predictive["x"].shape == (4, 5) and "prior" not in idata.groups()
