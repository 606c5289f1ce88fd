"""Guides and models follow Pyro's conventions: param store names, model inspection, SVI-like API."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies, get_model_relations

import pyro_lfi as lfi
from pyro_lfi.baselines import tractable

from .models import NOISE, A, linear_model, multi_model, numpy_simulator

LINEAR = {"x": lambda theta: dist.Normal(theta @ A.T, NOISE).to_event(1)}


@pytest.fixture(scope="module")
def sims():
    return lfi.simulate(linear_model, 100, seed=0, progress=False)


def _weights(guide) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in guide.named_parameters()}


def test_two_guides_keep_their_own_weights_in_the_param_store(sims):
    a, b = (lfi.NeuralPosterior(linear_model).build(sims) for _ in range(2))
    x = sims.values["x"][0]
    pyro.infer.Predictive(poutine.uncondition(linear_model), guide=a, num_samples=5)(x=x)
    before_a, before_b = _weights(a), _weights(b)
    svi = pyro.infer.SVI(tractable(linear_model, LINEAR), b, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    for _ in range(2):
        svi.step(x=x)
    changed_a = [k for k, v in a.named_parameters() if not torch.equal(v, before_a[k])]
    still_b = [k for k, v in b.named_parameters() if torch.equal(v, before_b[k])]
    assert not changed_a, f"SVI on guide B changed guide A's weights: {changed_a}"
    assert not still_b, f"SVI on guide B left these of its weights alone: {still_b}"
    assert a.state_dict().keys() == b.state_dict().keys()  # saved files do not depend on the name


def test_a_guide_named_by_the_user_uses_that_prefix_in_the_param_store(sims):
    guide = lfi.NeuralPosterior(linear_model, name="my_guide").build(sims)
    guide(x=sims.values["x"][0])
    names = list(pyro.get_param_store().keys())
    assert names and all(n.startswith("my_guide.") for n in names)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        lfi.NeuralPosterior(linear_model, name="")


def test_a_fresh_guide_refuses_a_state_dict_with_the_way_to_load_one(sims):
    trained = lfi.NeuralPosterior(linear_model).build(sims)
    fresh = lfi.NeuralPosterior(linear_model)
    with pytest.raises(lfi.NotFittedError, match=r"NeuralPosterior\.load\(path, model\).*build\(simulations\)"):
        fresh.load_state_dict(trained.state_dict())
    fresh.build(sims).load_state_dict(trained.state_dict())  # once built, it loads
    for (k, v), w in zip(fresh.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(v, w), k


def _numpy_model(x=None):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return pyro.sample("x", lfi.Simulator(numpy_simulator, theta), obs=x)


def _plated_model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    pyro.sample("unused", dist.LogNormal(0.0, 1.0))
    with pyro.plate("trials", 4):
        return pyro.sample("x", lfi.Simulator(lambda m: m + torch.randn(m.shape), mu), obs=x)


@pytest.mark.parametrize("model", [linear_model, multi_model, _numpy_model, _plated_model])
@pytest.mark.parametrize("observed", [False, True])
def test_model_inspection_sees_what_the_simulator_depends_on(model, observed):
    kwargs = {"x": poutine.trace(model).get_trace().nodes["x"]["value"]} if observed else {}
    relations = get_model_relations(model, model_kwargs=kwargs)
    latents = [n for n in relations["sample_sample"] if n != "x"]
    expected = [n for n in latents if n != "unused"]  # a latent the simulator does not take
    assert relations["sample_sample"]["x"] == expected
    assert relations["sample_dist"]["x"] == "Simulator"
    assert relations["observed"] == (["x"] if observed else [])
    if model is _plated_model:
        assert relations["plate_sample"] == {"trials": ["x"]}
    prior = get_dependencies(model, model_kwargs=kwargs)["prior_dependencies"]
    assert set(prior["x"]) == {"x", *expected}
    with pytest.raises(lfi.SimulatorLikelihoodError):  # still no likelihood outside inspection
        poutine.trace(model).get_trace(**kwargs).log_prob_sum()


def test_render_model_draws_a_simulator_model():
    pytest.importorskip("graphviz")
    assert pyro.render_model(multi_model, model_kwargs={"x": torch.zeros(5)}) is not None


def test_npe_evaluate_loss_is_the_loss_without_a_step(sims):
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model, estimator="mdn"))
    npe.step(sims)  # builds the guide and makes the optimizer, which evaluate_loss must not use
    before = _weights(npe.guide)
    grads = [p.grad.clone() for p in npe.guide.parameters()]
    loss = npe.evaluate_loss(sims)
    assert isinstance(loss, float)
    assert loss == pytest.approx(npe.loss(sims).item(), abs=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in npe.guide.named_parameters())
    assert all(torch.equal(p.grad, g) for p, g in zip(npe.guide.parameters(), grads))  # no backward pass
