"""Posterior-predictive checks on exported ArviZ results."""

import io

import arviz as az
import matplotlib.pyplot as plt
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import ARVIZ_1, figure_of
from pyro_lfi.diagnostics import predictive_check

from .trained_guides import X_O, linear_guide  # noqa: F401 (a fixture)

pytestmark = pytest.mark.arviz


def test_predictive_check_typical_and_outlying_observation(linear_guide):  # noqa: F811
    typical = lfi.to_inference_data(linear_guide, x=X_O, num_samples=1000, posterior_predictive=True, seed=0)
    check = predictive_check(typical)
    assert check.pvalue["x"] > 0.05, check
    # an observation no theta explains: x = A theta + noise cannot put x[2] far from
    # 0.2 theta[0] + 0.1 theta[1] when x[0], x[1] pin theta down
    outlier = torch.tensor([0.8, -0.6, 4.0])
    odd = lfi.to_inference_data(linear_guide, x=outlier, num_samples=1000, posterior_predictive=True, seed=0)
    bad = predictive_check(odd)
    assert bad.pvalue["x"] < 0.01, bad
    assert bad.distance["x"] > 3 * check.distance["x"]
    # a summary statistic: the sum of the entries (1-d)
    summed = predictive_check(odd, summary=lambda x: x.sum(-1, keepdims=True))
    assert 0 <= summed.pvalue["x"] <= 1
    buffer = io.BytesIO()
    plot = az.plot_ppc_dist(typical) if ARVIZ_1 else az.plot_ppc(typical, num_pp_samples=50, random_seed=0)
    figure_of(plot).savefig(buffer, format="png")
    plt.close("all")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_predictive_check_needs_predictive_group(linear_guide):  # noqa: F811
    idata = lfi.to_inference_data(linear_guide, x=X_O, num_samples=48, seed=0)
    with pytest.raises(ValueError, match="posterior_predictive=True"):
        predictive_check(idata)
