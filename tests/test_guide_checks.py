"""Clear answers, early: simulations of another model, a saved guide loaded into another model,
scalar data sites, models without latents, matrix-valued latents, observations that are not
tensors, zero draws."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

import pyro_lfi as lfi
from pyro_lfi.model.bijections import PositiveDefiniteTransform, bijection
from pyro_lfi.model.sites import ModelSites

from .models import linear_model, linear_simulator

# -- models that differ from linear_model in one way each -------------------------------------------


def uniform_model(x=None):  # the latent's support
    theta = pyro.sample("theta", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(linear_simulator, theta), obs=x)


def renamed_model(x=None):  # the latent's name
    phi = pyro.sample("phi", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(linear_simulator, phi), obs=x)


def wider_model(x=None):  # the latent's shape
    theta = pyro.sample("theta", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(lambda t: t @ torch.ones(3, 3), theta), obs=x)


def scaled_model(scale, x=None):  # needs an argument
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), scale).to_event(1))
    return pyro.sample("x", lfi.Simulator(linear_simulator, theta), obs=x)


def train(model, sims, **guide_options):
    guide = lfi.NeuralPosterior(model, **guide_options)
    lfi.NPE(model, guide, progress=False, seed=0, max_epochs=2).train(sims)
    return guide


@pytest.fixture(scope="module")
def linear_sims():
    return lfi.simulate(linear_model, 300, seed=0, progress=False)


@pytest.fixture(scope="module")
def linear_guide(linear_sims):
    return train(linear_model, linear_sims)


# -- simulations of another model -----------------------------------------------------------------


def test_simulations_outside_the_models_support_are_refused(linear_sims):
    with pytest.raises(lfi.SiteError, match=r"latent site 'theta': \d+ of 300 simulated rows .* outside its "
                                            r"support .*Interval.*pyro_lfi\.simulate\(model"):
        train(uniform_model, linear_sims)


def test_an_already_built_guide_refuses_them_too(linear_sims):
    own = lfi.simulate(uniform_model, 200, seed=1, progress=False)
    guide = train(uniform_model, own)
    npe = lfi.NPE(uniform_model, guide, progress=False, max_epochs=1)
    with pytest.raises(lfi.SiteError, match=r"'theta': \d+ of 300 .*outside its support"):
        npe.train(linear_sims)
    inside = linear_sims[((linear_sims["theta"] > 0) & (linear_sims["theta"] < 1)).all(-1)]
    with pytest.warns(UserWarning, match=r"only \d+ of \d+ simulated rows .*too few"):
        npe.train(inside)  # the rows inside the support are fine (but few)


def test_simulations_without_the_models_latent_or_with_another_shape_are_refused(linear_sims):
    with pytest.raises(lfi.SiteError, match=r"latent site 'phi' of the model has no simulated values.*\['theta'\]"):
        train(renamed_model, linear_sims)
    with pytest.raises(lfi.SiteError, match=r"site 'theta' has shape \(2,\) per simulation .* but \(3,\) in the model"):
        train(wider_model, linear_sims)


def test_a_latent_site_given_as_observed_is_named_with_the_data_sites(linear_sims):
    with pytest.raises(lfi.SiteError, match=r"observed='theta' names a latent site .* data sites are \['x'\]"):
        lfi.NeuralPosterior(linear_model, observed="theta")
    # a model that cannot run without its arguments is checked on the simulations
    guide = lfi.NeuralPosterior(scaled_model, observed="theta")
    sims = lfi.simulate(scaled_model, 100, 1.0, seed=0, progress=False)
    with pytest.raises(lfi.SiteError, match=r"observed=\['theta'\] names latent site.* data sites are \['x'\]"):
        lfi.NPE(scaled_model, guide).train(sims, model_args=(1.0,))


def test_a_model_without_latent_sites_is_refused_when_the_guide_is_made():
    def fixed_model(x=None):
        return pyro.sample("x", lfi.Simulator(linear_simulator, torch.zeros(2)), obs=x)

    with pytest.raises(lfi.SiteError, match=r"no latent sample sites.*pyro\.sample\('theta'"):
        lfi.NeuralPosterior(fixed_model)


def test_making_a_guide_leaves_the_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    lfi.NeuralPosterior(linear_model)
    assert torch.equal(torch.rand(2), expected)


# -- loading into another model ------------------------------------------------------------------


def test_load_refuses_a_model_with_other_sites_and_shows_the_differences(linear_guide, tmp_path):
    path = tmp_path / "guide.pt"
    linear_guide.save(path)
    with pytest.raises(lfi.SiteError, match=r"other sites than this one: latent site 'phi' \(2,\) is new; "
                                            r"latent site 'theta' \(2,\) is missing"):
        lfi.NeuralPosterior.load(path, renamed_model)
    with pytest.raises(lfi.SiteError, match=r"'theta': support IndependentConstraint\(Real\(\), 1\) -> "
                                            r"IndependentConstraint\(Interval"):
        lfi.NeuralPosterior.load(path, uniform_model)
    with pytest.raises(lfi.SiteError, match=r"'theta': shape \(2,\) -> \(3,\)"):
        lfi.NeuralPosterior.load(path, wider_model)
    loaded = lfi.NeuralPosterior.load(path, linear_model)
    assert loaded.sample(2, x=torch.zeros(3))["theta"].shape == (2, 2)


def test_load_checks_a_model_with_arguments_given_them(linear_guide, tmp_path):
    path = tmp_path / "guide.pt"
    linear_guide.save(path)
    with pytest.warns(UserWarning, match=r"could not run the model.*model_args="):
        lfi.NeuralPosterior.load(path, scaled_model)
    loaded = lfi.NeuralPosterior.load(path, scaled_model, model_args=(2.0,))
    assert loaded.sample(2, 2.0, x=torch.zeros(3))["theta"].shape == (2, 2)


# -- a scalar data site ---------------------------------------------------------------------------


def scalar_model(x=None):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(lambda t: t[..., 0] + 0.1 * torch.randn(t.shape[:-1]), theta), obs=x)


def test_a_scalar_data_site_trains_end_to_end():
    sims = lfi.simulate(scalar_model, 300, seed=0, progress=False)
    assert sims["x"].shape == (300,)
    guide = train(scalar_model, sims)
    draws = guide.sample(400, x=torch.tensor(1.5))
    assert draws["theta"].shape == (400, 2) and torch.isfinite(draws["theta"]).all()
    assert guide.sample(4, x=torch.tensor([0.1, 0.2, 0.3]))["theta"].shape == (4, 3, 2)
    assert guide.log_prob(draws, x=torch.tensor(1.5)).shape == (400,)
    pred = pyro.infer.Predictive(scalar_model, guide=guide, num_samples=5, parallel=True)(x=torch.tensor(1.5))
    assert pred["theta"].shape == (5, 2)


# -- matrix-valued latents ------------------------------------------------------------------------


def lkj_model(x=None):
    corr = pyro.sample("corr", dist.LKJCholesky(3, 2.0))
    return pyro.sample("x", lfi.Simulator(lambda c: (c @ torch.randn(*c.shape[:-2], 3, 1)).squeeze(-1), corr), obs=x)


def wishart_model(x=None):
    cov = pyro.sample("cov", dist.Wishart(torch.tensor(6.0), torch.eye(2)))
    return pyro.sample("x", lfi.Simulator(lambda c: torch.diagonal(c, dim1=-2, dim2=-1).log(), cov), obs=x)


@pytest.mark.filterwarnings("ignore:Singular sample detected")  # torch's Wishart sampler, retried
@pytest.mark.parametrize("model, name, support", [(lkj_model, "corr", constraints.corr_cholesky),
                                                  (wishart_model, "cov", constraints.positive_definite)])
def test_lkj_cholesky_and_wishart_latents_round_trip_and_train(model, name, support):
    sims = lfi.simulate(model, 300, seed=0, progress=False)
    sites = ModelSites.from_model(model, ("x",), {"x": sims["x"][0]})
    (site,) = sites.latents
    d = site.shape[-1]
    assert site.size == (d * (d - 1) // 2 if name == "corr" else d * (d + 1) // 2)
    z = sites.to_unconstrained(sims.latents)
    assert z.shape == (300, site.size) and torch.isfinite(z).all()
    back, _ = sites.to_constrained(z)
    assert torch.allclose(back[name], sims[name], atol=1e-4)
    guide = train(model, sims)
    draws = guide.sample(200, x=sims["x"][0])[name]
    assert draws.shape == (200, d, d) and support.check(draws).all()
    assert torch.isfinite(guide.log_prob({name: draws}, x=sims["x"][0])).all()


def test_positive_definite_transform_has_the_jacobian_of_its_map():
    transform = bijection(constraints.positive_definite)
    assert isinstance(transform, PositiveDefiniteTransform)
    u = torch.tensor([0.3, -0.5, 0.2, 0.7, 0.1, -0.4], dtype=torch.float64)  # D = 3
    rows, cols = torch.tril_indices(3, 3)

    def lower_triangle(v):
        return transform(v)[rows, cols]

    jacobian = torch.autograd.functional.jacobian(lower_triangle, u)
    matrix = transform(u)
    assert torch.allclose(transform.log_abs_det_jacobian(u, matrix), torch.linalg.slogdet(jacobian)[1])
    assert torch.allclose(transform.inv(matrix), u) and constraints.positive_definite.check(matrix)
    independent = bijection(constraints.independent(constraints.positive_definite, 1))
    assert independent.inv(matrix.expand(4, 3, 3)).shape == (4, 6)


# -- observations that are not tensors ------------------------------------------------------------


def test_observations_as_arrays_and_lists_become_tensors(linear_guide):
    x = [0.5, -0.2, 0.1]
    theta = {"theta": torch.tensor([[0.0, 0.0], [0.3, -0.1]])}
    expected = linear_guide.log_prob(theta, x=torch.tensor(x))
    for value in (np.array(x), np.array(x, dtype=np.float32), x, (0.5, -0.2, 0.1)):
        assert torch.allclose(linear_guide.log_prob(theta, x=value), expected, atol=1e-5)
    assert linear_guide.sample(3, x=np.array([x, x, x, x]))["theta"].shape == (3, 4, 2)
    assert linear_guide.sample(3, x=np.zeros(3, dtype=np.int64))["theta"].shape == (3, 2)


@pytest.mark.parametrize("value", ["1.0, 2.0, 3.0", object(), {"x": 1.0}, np.array(["a", "b", "c"])])
def test_non_numeric_observations_name_the_site_and_the_shape(linear_guide, value):
    with pytest.raises(lfi.ObservationError, match=r"observation of site 'x' is a .*not numbers.*shape \(3,\)"):
        linear_guide.sample(3, x=value)


# -- zero draws -----------------------------------------------------------------------------------


def test_zero_draws_are_empty_and_negative_ones_an_error(linear_guide):
    assert linear_guide.sample(0, x=torch.zeros(3))["theta"].shape == (0, 2)
    assert linear_guide.sample(0, x=torch.zeros(4, 3))["theta"].shape == (0, 4, 2)
    assert linear_guide.sample(np.int64(2), x=torch.zeros(3))["theta"].shape == (2, 2)
    with pytest.raises(ValueError, match="num_samples must be 0 or more, got -1"):
        linear_guide.sample(-1, x=torch.zeros(3))
    with pytest.raises(TypeError, match="num_samples must be an int"):
        linear_guide.sample(2.5, x=torch.zeros(3))


def test_a_support_that_changes_with_another_latent_is_refused():
    def dependent_model(x=None):
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 0.5))
        theta = pyro.sample("theta", dist.Uniform(0.0, sigma))
        return pyro.sample("x", lfi.Simulator(lambda t: t + 0.1 * torch.randn(t.shape), theta), obs=x)

    sims = lfi.simulate(dependent_model, 100, seed=0, progress=False)
    with pytest.raises(lfi.SiteError, match=r"'theta' has a support that changes with the other latent sites"):
        train(dependent_model, sims)
