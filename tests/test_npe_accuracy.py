"""NPE against exact posteriors (C2ST with sbibm's classifier)."""

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.diagnostics import c2st
from pyro_lfi.nn import MLP

from .models import linear_model, linear_posterior

X_O = torch.tensor([0.8, -0.6, 0.3])


CONFIGURATIONS = {  # name: (guide, training options)
    "nsf": (lambda: lfi.NeuralPosterior(linear_model, estimator="nsf"), {}),
    "mdn": (lambda: lfi.NeuralPosterior(linear_model, estimator="mdn"), {}),
    "splines only, ReLU MLP embedding, no weight averaging": (
        lambda: lfi.NeuralPosterior(linear_model, estimator="nsf", affine=False, embedding_net=MLP(X_O.shape, 32)),
        {"ema": None},
    ),
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name.startswith("splines only") else name for name in CONFIGURATIONS
])  # the ablation among the slow tests (each of its options has fast tests of its own)
def test_linear_gaussian_c2st(name):
    make_guide, options = CONFIGURATIONS[name]
    sims = lfi.simulate(linear_model, 5000, seed=1, progress=False)
    guide = make_guide()
    lfi.NPE(linear_model, guide, progress=False, seed=1, **options).train(sims)
    torch.manual_seed(2)
    approx = guide.sample(2000, x=X_O)["theta"]
    exact = linear_posterior(X_O).sample((2000,))
    accuracy = c2st(approx, exact, seed=0)
    assert accuracy <= 0.55, accuracy
