"""One contract for every conditional density estimator a guide can be built with (the registry
``pyro_lfi.guide.estimators.ESTIMATORS``): a new estimator registered there is checked here."""

import math

import pytest
import torch

from pyro_lfi.guide.estimators import ESTIMATORS, make_estimator

NAMES = sorted(ESTIMATORS)
#: every registered estimator, and ensembles (``ensemble=K`` among the estimator's keywords)
CASES = [(name, {}) for name in NAMES] + [("nsf", {"ensemble": 2}), ("mdn", {"ensemble": 3})]
IDS = [name + (f"-ensemble{kw['ensemble']}" if kw else "") for name, kw in CASES]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_distribution_shapes_and_finite_densities(name, kwargs):
    torch.manual_seed(0)
    estimator = make_estimator(name, 3, 4, kwargs)
    q = estimator(torch.randn(5, 2, 4))
    assert q.batch_shape == (5, 2) and q.event_shape == (3,)
    z = q.sample((7,))
    assert z.shape == (7, 5, 2, 3) and torch.isfinite(z).all()
    log_q = q.log_prob(z)
    assert log_q.shape == (7, 5, 2) and torch.isfinite(log_q).all()


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_density_is_normalized_over_the_standardized_variable(name, kwargs):
    torch.manual_seed(1)
    estimator = make_estimator(name, 1, 2, kwargs)
    estimator.fit_standardization(5.0 + 3.0 * torch.randn(4000, 1))
    grid = torch.linspace(-60.0, 70.0, 20001)[:, None]
    with torch.no_grad():
        density = estimator(torch.zeros(len(grid), 2)).log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=0.02)
    mean = torch.trapezoid(density * grid[:, 0], grid[:, 0]).item()
    assert abs(mean - 5.0) < 6.0  # the standardization is applied: far from 0 in units of z


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_fits_a_conditional_gaussian(name, kwargs):
    """z | c ~ N(2c, 0.5^2): the mean negative log density approaches its entropy, 0.726."""
    torch.manual_seed(2)
    c = torch.randn(1024, 1)
    z = 2.0 * c + 0.5 * torch.randn(1024, 1)
    estimator = make_estimator(name, 1, 1, kwargs)
    estimator.fit_standardization(z)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        estimator.loss(z, c).mean().backward()  # the estimator's own training loss
        optimizer.step()
    with torch.no_grad():
        loss = -estimator(c).log_prob(z).mean()
    entropy = 0.5 * math.log(2 * math.pi * math.e * 0.25)
    assert loss.item() < entropy + 0.25


def test_an_unknown_name_or_a_wrong_callable_is_refused():
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("realnvp", 2, 2, {})
    with pytest.raises(TypeError, match="ConditionalDensityEstimator"):
        make_estimator(lambda features, context: torch.nn.Linear(features, context), 2, 2, {})
    with pytest.raises(ValueError, match="ensemble must be a number of members"):
        make_estimator("nsf", 2, 2, {"ensemble": 0})
