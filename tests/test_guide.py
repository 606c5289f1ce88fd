import subprocess
import sys
import textwrap

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

import pyro_lfi as lfi

from .models import linear_model, moons_model, multi_model


def quick_npe(model, num_simulations=2000, **guide_kwargs):
    sims = lfi.simulate(model, num_simulations, seed=0, progress=False)
    guide = lfi.NeuralPosterior(model, observed="x", **guide_kwargs)
    lfi.NPE(model, guide, progress=False, max_epochs=5, seed=0).train(sims)
    return guide, sims


@pytest.fixture(scope="module")
def multi_guide():
    pyro.set_rng_seed(0)
    return quick_npe(multi_model)


X_MULTI = torch.tensor([0.5, 1.0, -0.2, 0.3, 0.0])


@pytest.mark.parametrize("estimator", ["nsf", "maf", "mdn"])
def test_samples_lie_in_their_supports(estimator):
    guide, _ = quick_npe(multi_model, 500, estimator=estimator)
    s = guide.sample(2000, x=X_MULTI)
    assert s["scale"].shape == (2000,) and s["u"].shape == (2000, 2) and s["v"].shape == (2000, 3)
    assert (s["scale"] > 0).all()
    assert ((s["u"] > -1) & (s["u"] < 2)).all()
    assert torch.isfinite(s["v"]).all()


def test_log_prob_is_the_change_of_variables(multi_guide):
    guide, _ = multi_guide
    sites = guide.sites
    q = guide.posterior_z(x=X_MULTI)
    z = q.sample((5,))

    def constrained_flat(zi):
        values, _ = sites.to_constrained(zi)
        return torch.cat([values["scale"].reshape(1), values["u"], values["v"]])

    for zi in z:
        jac = torch.autograd.functional.jacobian(constrained_flat, zi)
        expected = q.log_prob(zi) - torch.linalg.slogdet(jac)[1]
        values, _ = sites.to_constrained(zi)
        got = guide.log_prob(values, x=X_MULTI)
        assert torch.allclose(got, expected, atol=1e-4), (got, expected)


def test_batch_of_observations(multi_guide):
    guide, _ = multi_guide
    xs = torch.stack([X_MULTI, X_MULTI + 1, X_MULTI - 1])
    s = guide.sample(10, x=xs)
    assert s["u"].shape == (10, 3, 2)
    assert guide.log_prob(s, x=xs).shape == (10, 3)


def test_guide_is_a_pyro_guide(multi_guide):
    guide, _ = multi_guide
    trace = poutine.trace(guide).get_trace(x=X_MULTI)
    assert {"scale", "u", "v", "_lfi_latent"} <= set(trace.nodes)
    assert trace.nodes["_lfi_latent"]["infer"]["is_auxiliary"]
    # the guide trace's log density equals log q(theta) in the constrained space
    theta = {n: trace.nodes[n]["value"] for n in ("scale", "u", "v")}
    assert torch.allclose(trace.log_prob_sum(), guide.log_prob(theta, x=X_MULTI), atol=1e-4)


def test_predictive_latents_and_posterior_predictive(multi_guide):
    guide, _ = multi_guide
    latents = Predictive(multi_model, guide=guide, num_samples=50, parallel=True)(x=X_MULTI)
    assert latents["u"].shape == (50, 2) and latents["scale"].shape == (50,)
    pred = Predictive(poutine.uncondition(multi_model), guide=guide, num_samples=50, parallel=True)(x=X_MULTI)
    assert pred["x"].shape == (50, 5) and pred["u"].shape == (50, 2)
    assert pred["x"].std(0).min() > 0  # fresh simulations, one per draw


def test_observation_through_pyro_condition():
    conditioned = pyro.condition(moons_model, data={"x": torch.tensor([0.1, 0.0])})
    guide, _ = quick_npe(conditioned, 500)
    assert guide.sample(7)["theta"].shape == (7, 2)
    assert torch.equal(guide.observation(), torch.tensor([0.1, 0.0]))


def test_map_is_in_a_high_density_region():
    guide, _ = quick_npe(linear_model, 1000)
    x_o = torch.tensor([0.5, 0.2, 0.1])
    theta_map = guide.map(x=x_o)["theta"]
    draws = guide.sample(500, x=x_o)
    assert guide.log_prob({"theta": theta_map}, x=x_o) >= guide.log_prob(draws, x=x_o).max() - 1e-3


def test_errors():
    guide = lfi.NeuralPosterior(moons_model, observed="y")
    sims = lfi.simulate(moons_model, 100, seed=0, progress=False)
    with pytest.raises(lfi.ObservationError, match=r"observed site\(s\) \['y'\].*data sites \['x'\]"):
        lfi.NPE(moons_model, guide).train(sims)
    untrained = lfi.NeuralPosterior(moons_model)
    with pytest.raises(lfi.NotFittedError, match="train"):
        untrained.sample(5, x=torch.zeros(2))
    with pytest.raises(ValueError, match="unknown estimator"):
        lfi.NeuralPosterior(moons_model, estimator="gp")
    guide, _ = quick_npe(moons_model, 200)
    with pytest.raises(lfi.ObservationError, match=r"shape \(3,\).*shape \(2,\) per simulation"):
        guide.sample(5, x=torch.zeros(3))
    with pytest.raises(lfi.ObservationError, match="no observed value for site 'x'"):
        guide.sample(5)


def test_all_invalid_rows_is_an_error():
    sims = lfi.simulate(moons_model, 20, seed=0, progress=False)
    sims.status[:] = lfi.Status.NONFINITE
    guide = lfi.NeuralPosterior(moons_model)
    with pytest.raises(ValueError, match=r"no valid simulations.*all 20 rows"):
        lfi.NPE(moons_model, guide).train(sims)


def test_custom_embedding_net_and_save_load(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh())
    guide, _ = quick_npe(multi_model, 300, embedding_net=net, estimator="mdn")
    path = tmp_path / "guide.pt"
    guide.save(path)
    with pytest.raises(ValueError, match="embedding_net"):
        lfi.NeuralPosterior.load(path, multi_model)
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh())
    loaded = lfi.NeuralPosterior.load(path, multi_model, embedding_net=fresh)
    s = guide.sample(5, x=X_MULTI)
    assert torch.allclose(loaded.log_prob(s, x=X_MULTI), guide.log_prob(s, x=X_MULTI))


def test_load_refuses_other_files_and_older_formats_with_the_reason(tmp_path):
    guide, _ = quick_npe(moons_model, 100)
    path = tmp_path / "guide.pt"
    guide.save(path)
    saved = torch.load(path, weights_only=False)
    torch.save(dict(saved, format=1), path)
    with pytest.raises(ValueError, match=r"format 1.*reads format 2.*Retrain"):
        lfi.NeuralPosterior.load(path, moons_model)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"not a guide saved by NeuralPosterior\.save"):
        lfi.NeuralPosterior.load(path, moons_model)


def test_save_and_load_in_a_new_process(tmp_path):
    guide, _ = quick_npe(moons_model, 300)
    path = tmp_path / "guide.pt"
    guide.save(path)
    theta = torch.tensor([[0.1, 0.2], [-0.3, 0.4]])
    expected = guide.log_prob({"theta": theta}, x=torch.zeros(2)).tolist()
    code = textwrap.dedent(f"""
        import torch, pyro_lfi as lfi
        from tests.models import moons_model
        guide = lfi.NeuralPosterior.load({str(path)!r}, moons_model)
        theta = torch.tensor([[0.1, 0.2], [-0.3, 0.4]])
        print(guide.log_prob({{"theta": theta}}, x=torch.zeros(2)).tolist())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = eval(out.stdout.strip().splitlines()[-1])
    assert got == pytest.approx(expected, abs=1e-5)
