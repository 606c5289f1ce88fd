"""NPE against exact posteriors (C2ST with sbibm's classifier)."""

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.nn import SkipMLP

from .models import linear_model, linear_posterior

X_O = torch.tensor([0.8, -0.6, 0.3])


GUIDES = {
    "nsf": lambda: lfi.NeuralPosterior(linear_model, estimator="nsf"),
    "mdn": lambda: lfi.NeuralPosterior(linear_model, estimator="mdn"),
    "nsf, conditional affine, linear shortcut": lambda: lfi.NeuralPosterior(
        linear_model, estimator="nsf", affine=True, embedding_net=SkipMLP(X_O.shape, 32)
    ),
}


@pytest.mark.parametrize("name", list(GUIDES))
def test_linear_gaussian_c2st(name):
    sims = lfi.simulate(linear_model, 5000, seed=1, progress=False)
    guide = GUIDES[name]()
    lfi.NPE(linear_model, guide, progress=False, seed=1).train(sims)
    torch.manual_seed(2)
    approx = guide.sample(2000, x=X_O)["theta"]
    exact = linear_posterior(X_O).sample((2000,))
    accuracy = c2st(approx, exact, seed=0)
    assert accuracy <= 0.55, accuracy
