"""Neural ratio estimation: a learned likelihood-to-evidence ratio of a Simulator site in the
model, so that NUTS samples prior x ratio (against analytic posteriors)."""

import pyro.distributions as dist
import pytest
import torch
from torch.nn.functional import logsigmoid

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.infer.losses import other_rows
from pyro_lfi.infer.nre import nre_c_loss

from .models import NOISE, A, linear_model, linear_posterior
from .test_nle import exact, nuts, trials_model


def trained_ratio(model, loss="nre-c") -> lfi.NeuralRatio:
    ratio = lfi.NeuralRatio(model, "x")
    sims = lfi.simulate(model, 8000, seed=0, progress=False)
    lfi.NRE(model, ratio, loss=loss, progress=False, seed=0).train(sims)
    return ratio


@pytest.mark.parametrize("loss,bound", [
    pytest.param("nre-a", 0.55, marks=pytest.mark.slow),  # its loss is NRE-C's with one atom (tested below)
    ("bnre", 0.6), ("nre-c", 0.55),
])
def test_nuts_on_prior_times_ratio_finds_the_analytic_posterior(loss, bound):
    x_o = torch.tensor([0.8, -0.4, 0.3])
    samples = nuts(lfi.surrogate(linear_model, trained_ratio(linear_model, loss)), x=x_o)
    reference = exact(linear_posterior(x_o))
    assert c2st(samples, reference, seed=0) <= bound
    if loss == "bnre":  # balanced: not narrower than the posterior
        assert (samples.std(0) >= 0.9 * reference.std(0)).all()


def test_a_ratio_scores_but_does_not_simulate_and_losses_are_checked():
    ratio = lfi.NeuralRatio(linear_model, "x")
    with pytest.raises(lfi.NotFittedError):
        ratio(torch.zeros(2))
    with pytest.raises(ValueError, match="unknown loss"):
        lfi.NRE(linear_model, ratio, loss="nre-z")
    with pytest.raises(ValueError, match="unknown activation"):
        lfi.NeuralRatio(linear_model, "x", activation="swish")
    with pytest.raises(ValueError, match="gamma > 0"):
        lfi.NRE(linear_model, ratio, loss="nre-c", gamma=0.0)
    with pytest.raises(TypeError, match="NeuralRatio"):
        lfi.NRE(linear_model, lfi.NeuralLikelihood(linear_model))
    lfi.NRE(linear_model, ratio, progress=False, seed=0, max_epochs=1).train(
        lfi.simulate(linear_model, 200, seed=0, progress=False)
    )
    scored = ratio(torch.zeros(2))
    assert scored.log_prob(torch.zeros(3)).shape == () and scored.expand([4]).log_prob(torch.zeros(4, 3)).shape == (4,)
    with pytest.raises(NotImplementedError, match="cannot simulate"):
        scored.sample()


@pytest.mark.slow  # the plate's factorization is tested fast for likelihoods (test_nle.py), which share it
def test_a_ratio_trained_on_single_trials_scores_iid_trials_under_a_plate():
    x_o = torch.tensor([0.5, -0.3]) @ A.T + NOISE * torch.randn(10, 3, generator=torch.Generator().manual_seed(3))
    samples = nuts(lfi.surrogate(trials_model, trained_ratio(trials_model)), x=x_o, trials=10)
    cov = torch.linalg.inv(torch.eye(2) + 10 * A.T @ A / NOISE**2)
    reference = exact(dist.MultivariateNormal(cov @ A.T @ x_o.sum(0) / NOISE**2, covariance_matrix=cov))
    assert c2st(samples, reference, seed=0) <= 0.55


class Logit(torch.nn.Module):
    """A stand-in ratio: a fixed function of the pair, d = psi . x."""

    def logit(self, psi, x):
        return (psi * x).sum(-1)


def test_the_contrastive_loss_is_its_formula_and_reduces_to_nre_a():
    psi, x = torch.randn(7, 3), torch.randn(7, 3)
    k, gamma = 3, 0.5
    torch.manual_seed(0)
    loss = nre_c_loss(Logit(), psi, x, num_atoms=k, gamma=gamma)
    torch.manual_seed(0)
    others = other_rows(7, k)
    expected = 0.0
    for i in range(7):
        apart = torch.exp(psi[others[i]] @ x[i])
        own = torch.cat([psi[i : i + 1], psi[others[i, 1:]]]) @ x[i]
        q0 = k / (k + gamma * apart.sum())
        q1 = gamma * own[0].exp() / (k + gamma * own.exp().sum())
        expected = expected - (q0.log() + gamma * q1.log()) / (1 + gamma) / 7
    assert torch.allclose(loss, expected, atol=1e-6)
    torch.manual_seed(1)  # K = 1, gamma = 1: the binary loss of NRE-A, halved
    contrastive = nre_c_loss(Logit(), psi, x, num_atoms=1, gamma=1.0)
    torch.manual_seed(1)
    apart = other_rows(7, 1)[:, 0]
    binary = -(logsigmoid((psi * x).sum(-1)) + logsigmoid(-(psi[apart] * x).sum(-1)))
    assert torch.allclose(contrastive, binary.mean() / 2, atol=1e-6)
    assert torch.isfinite(nre_c_loss(Logit(), psi[:2], x[:2], num_atoms=10))  # a last small batch: fewer atoms
    with pytest.raises(ValueError, match="num_atoms"):
        nre_c_loss(Logit(), psi[:1], x[:1])
