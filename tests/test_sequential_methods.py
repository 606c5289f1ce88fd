"""The contract of every sequential method in ``pyro_lfi.infer.sequential.METHODS``: registering a
method is enough for it to be checked here (two short rounds on a linear Gaussian model with a
bounded prior and a known posterior, the guides it refuses, its construction)."""

import math
import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.infer.sequential import APT, METHODS, TSNPE, SequentialMethod
from pyro_lfi.infer.sequential.mixtures import divide_by_gaussian, first_component
from pyro_lfi.infer.sequential.snpe_a import GaussianDivision

from .models import NOISE, A, linear_simulator

BOX = 3.0
THETA_O = torch.tensor([1.0, -0.8])
X_O = THETA_O @ A.T  # noise-free: the posterior mean is THETA_O
N = 300
FAST = dict(progress=False, stop_after_epochs=20, max_epochs=200)
NETS = {"nsf": dict(transforms=2, hidden_features=(32, 32)), "mdn": dict(components=2, hidden_features=(32, 32))}


def boxed_linear_model(x=None):
    """x = A theta + noise under a flat prior on a box: the posterior is N(THETA_O, S) with
    S = NOISE^2 (A^T A)^-1 (standard deviations 0.28 and 0.23), cut by a box 6 of them away."""
    theta = pyro.sample("theta", dist.Uniform(-BOX, BOX).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(linear_simulator, theta), obs=x)


def posterior_scale() -> torch.Tensor:
    return (NOISE**2 * torch.linalg.inv(A.T @ A)).diagonal().sqrt()


def built_guide(estimator: str, bounded: str = "transform"):
    sims = lfi.simulate(boxed_linear_model, 100, seed=0, progress=False)
    guide = lfi.NeuralPosterior(boxed_linear_model, estimator=estimator, bounded=bounded, **NETS[estimator])
    guide.build(sims)
    return guide, lfi.Prior(boxed_linear_model, guide.sites, x=X_O), guide.observation(x=X_O)


def runs():
    """Each method with each guide it takes: flows and mixtures on the logit of the box, and
    flows truncated to the box."""
    return [
        pytest.param(name, estimator, bounded, id=f"{name}-{estimator}" + {"truncate": "-truncated"}.get(bounded, ""))
        for name, cls in METHODS.items()
        for estimator, bounded in (("nsf", "transform"), ("mdn", "transform"), ("nsf", "truncate"))
        if estimator == "mdn" or not cls().needs_mixture_density
    ]


@pytest.mark.parametrize("name,estimator,bounded", runs())
def test_two_rounds_focus_on_the_observation_and_find_the_posterior(name, estimator, bounded):
    method = METHODS[name]()
    guide = lfi.NeuralPosterior(boxed_linear_model, estimator=estimator, bounded=bounded, **NETS[estimator])
    snpe = lfi.SNPE(boxed_linear_model, guide, method=method, seed=0, **FAST)
    assert snpe.method is method
    sims = snpe.run(x=X_O, num_rounds=2, simulations_per_round=N, seed=0)

    assert sims.round.tolist() == [0] * N + [1] * N and len(snpe.history) == 2
    assert [r.round for r in snpe.rounds] == [0, 1] and snpe.proposals[0] is None
    assert [r.proposal for r in snpe.rounds] == ["prior", snpe.proposals[1].name]
    for record, history in zip(snpe.rounds, snpe.history):
        assert record.num_simulations == N and record.num_invalid == 0 and not record.interrupted
        assert 0 < record.num_training_rows <= len(sims) and record.loss
        assert math.isfinite(record.validation_loss) and record.epochs == history.epochs > 0

    z = snpe.proposals[1].sample(500)  # the proposal, in the unconstrained space of the guide
    assert z.shape == (500, 2) and torch.isfinite(method.prior.log_prob(z)).all()
    theta = sims.values["theta"]
    assert (theta.abs() < BOX).all()
    distance = (theta - THETA_O).norm(dim=-1)
    # round 1 spent its simulations nearer x_o's posterior (medians 0.55 to 0.85 of the prior's here:
    # TSNPE's region holds all but 1e-4 of a first estimate still wide)
    assert distance[N:].median() < 0.9 * distance[:N].median()

    torch.manual_seed(0)
    draws = guide.sample(2000, x=X_O)["theta"]
    assert draws.shape == (2000, 2) and torch.isfinite(guide.log_prob({"theta": draws[:200]}, x=X_O)).all()
    # within one posterior standard deviation (over ten seeds the worst method missed by 0.41 of one;
    # the prior's mean is 3.5 away), and neither collapsed nor as wide as the prior (ratio 1.7 there)
    assert ((draws.mean(0) - THETA_O).abs() < posterior_scale()).all(), draws.mean(0)
    assert ((draws.std(0) / posterior_scale()).log().abs() < math.log(2)).all(), draws.std(0)


@pytest.mark.parametrize(
    "make", [*METHODS.values(), lambda: APT(loss="mixture")], ids=[*METHODS, "apt-mixture"]
)
def test_a_method_refuses_a_guide_it_cannot_train(make):
    method = make()
    guide, prior, x_o = built_guide("nsf")
    if not method.needs_mixture_density:
        method.start(guide, prior, x_o)
        return
    with pytest.raises(ValueError, match=r"needs a mixture density guide: NeuralPosterior\(model, estimator='mdn'\)"):
        method.start(guide, prior, x_o)
    with pytest.raises(ValueError, match="mixture density guide"):  # the same through SNPE, after round 0
        lfi.SNPE(boxed_linear_model, guide, method=make(), **FAST).run(x=X_O, num_rounds=1, simulations_per_round=50)
    truncated, prior, x_o = built_guide("mdn", bounded="truncate")
    with pytest.raises(ValueError, match="bounded='transform'"):  # Gaussian algebra needs all of R^D
        make().start(truncated, prior, x_o)


def test_apt_gives_a_truncated_mixture_density_guide_the_atomic_loss():
    method = APT()
    method.start(*built_guide("mdn", bounded="truncate"))
    assert not method.mixture


@pytest.mark.parametrize("name", list(METHODS))
def test_a_method_object_serves_one_run(name):
    method = METHODS[name]()
    guide, prior, x_o = built_guide("mdn")
    method.start(guide, prior, x_o)
    method.start(guide, prior, x_o)  # the same run again is fine
    other, _, _ = built_guide("mdn")
    with pytest.raises(ValueError, match="its own method object"):
        method.start(other, prior, x_o)


@pytest.mark.parametrize("name", list(METHODS))
def test_registered_methods_are_built_by_name(name):
    cls = METHODS[name]
    assert issubclass(cls, SequentialMethod) and cls.name == name
    snpe = lfi.SNPE(boxed_linear_model, lfi.NeuralPosterior(boxed_linear_model), method=name)
    assert type(snpe.method) is cls and snpe.validity is None and snpe.rounds == []


def test_shorthands_build_the_method_object():
    guide = lfi.NeuralPosterior(boxed_linear_model)
    apt = lfi.SNPE(boxed_linear_model, guide, loss="atomic", num_atoms=5, restrict=0.3).method
    assert isinstance(apt, APT) and (apt.loss, apt.num_atoms, apt.restrict) == ("atomic", 5, 0.3)
    tsnpe = lfi.SNPE(boxed_linear_model, guide, method="tsnpe", quantile=1e-3, num_atoms=10).method
    assert isinstance(tsnpe, TSNPE) and tsnpe.quantile == 1e-3  # another method's default is no error
    with pytest.raises(ValueError, match="num_atoms=5 applies to method='apt' only"):
        lfi.SNPE(boxed_linear_model, guide, method="tsnpe", num_atoms=5)
    with pytest.raises(TypeError, match=r"pass them to the method's constructor, APT\(\.\.\.\)"):
        lfi.SNPE(boxed_linear_model, guide, method=APT(), num_atoms=5)
    with pytest.raises(ValueError, match=r"quantile must lie in \[0, 1\)"):
        TSNPE(quantile=1.0)


def test_snpe_a_correction_of_the_first_component_and_of_old_files(tmp_path):
    guide, _, _ = built_guide("mdn")
    x = torch.randn(4, 3)
    q = guide.estimate(x)
    g = dist.MultivariateNormal(torch.tensor([0.5, -0.5]), 4.0 * torch.eye(2))
    z = torch.randn(4, 2)
    first = GaussianDivision(None, first_component=True)(q)
    assert first.mixture_distribution.logits.shape == (4, 1)
    assert torch.allclose(first.log_prob(z), q.component_distribution.log_prob(z[:, None])[:, 0])
    expected = divide_by_gaussian(first_component(q), g).log_prob(z)
    assert torch.allclose(GaussianDivision(g, first_component=True)(q).log_prob(z), expected)
    old = GaussianDivision(g)  # pickled before it had first_component: the default applies
    del old.__dict__["first_component"]
    assert torch.allclose(pickle.loads(pickle.dumps(old))(q).log_prob(z), divide_by_gaussian(q, g).log_prob(z))

    guide.correction = GaussianDivision(g)  # a file of the format that stored (loc, covariance)
    guide.save(tmp_path / "g.pt")
    saved = torch.load(tmp_path / "g.pt", weights_only=False)
    saved["correction"], saved["proposal_correction"] = None, (g.loc, g.covariance_matrix)
    torch.save(saved, tmp_path / "old.pt")
    loaded = lfi.NeuralPosterior.load(tmp_path / "old.pt", boxed_linear_model)
    theta = torch.randn(5, 2)
    assert torch.allclose(loaded.log_prob({"theta": theta}, x=X_O), guide.log_prob({"theta": theta}, x=X_O))
