"""Conditional flows: densities that integrate to one, with and without the conditional affine
layer, in one and two dimensions."""

import pytest
import torch

from pyro_lfi.nn import Flow


@pytest.mark.parametrize("affine", [False, True], ids=["splines", "affine + splines"])
@pytest.mark.parametrize("features", [1, 2])
def test_density_integrates_to_one(features, affine):
    torch.manual_seed(0)
    flow = Flow(features, 3, affine=affine)
    flow.standardize.mean.fill_(0.5)
    flow.standardize.std.fill_(2.0)
    grid = torch.linspace(-25, 25, 1001 if features == 1 else 401)
    z = grid[:, None] if features == 1 else torch.cartesian_prod(grid, grid)
    cell = (grid[1] - grid[0]) ** features
    context = torch.randn(3)
    with torch.no_grad():
        mass = (flow(context).log_prob(z).exp().sum() * cell).item()
        draws = flow(context).sample((500,))
    assert mass == pytest.approx(1.0, abs=0.02)
    assert draws.shape == (500, features)
