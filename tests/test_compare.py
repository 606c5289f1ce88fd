"""lfi.compare: the table against a reference posterior, and its figures."""

import io

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import dataset, from_datasets, group, result_type_name

from .models import linear_posterior
from .trained_guides import X_O, linear_guide, linear_nuts  # noqa: F401 (fixtures)

pytestmark = pytest.mark.arviz


def _posterior(**draws: np.ndarray):
    """An ArviZ result whose posterior has these variables ``[chain, draw, ...]``."""
    return from_datasets({"posterior": dataset(draws)})


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@pytest.fixture
def comparison(linear_guide, linear_nuts):  # noqa: F811
    torch.manual_seed(0)
    exact = _posterior(theta=linear_posterior(X_O).sample((1, 1000)).numpy())
    npe = lfi.to_inference_data(linear_guide, x=X_O, num_samples=1000, seed=0)
    exact_draws = group(exact, "posterior")["theta"].values
    shift = np.array([2.0, 0.0]) * exact_draws.std((0, 1), ddof=1)  # two posterior sds in theta[0]
    shifted = _posterior(theta=exact_draws + shift)
    posteriors = {"NPE": npe, "NUTS": linear_nuts, "exact": exact, "shifted": shifted}
    return lfi.compare(posteriors, reference="exact", classifier="fast", wall_time={"NPE": 1.5})


def test_compare_table(comparison, linear_nuts):  # noqa: F811
    table = comparison.table
    assert list(table.index) == ["exact", "NPE", "NUTS", "shifted"]  # the reference row first
    assert list(table.columns) == ["c2st", "mean_error", "sd_error", "ess", "num_draws", "wall_time"]
    assert np.isnan(table.loc["exact", "c2st"])
    assert table.loc["exact", "mean_error"] == 0 and table.loc["exact", "sd_error"] == 0
    assert table.loc["NPE", "c2st"] < 0.6 and table.loc["NUTS", "c2st"] < 0.6
    assert table.loc["shifted", "c2st"] > 0.75
    assert table.loc["shifted", "mean_error"] == pytest.approx(2.0, abs=1e-5)  # float32 draws
    assert table.loc["shifted", "sd_error"] == pytest.approx(0.0, abs=1e-5)
    assert table.loc["NPE", "mean_error"] < 0.3
    # ess: ~ the number of independent draws for NPE, fewer than the draws for autocorrelated NUTS
    assert 600 < table.loc["NPE", "ess"] < 1400
    assert table.loc["NUTS", "ess"] == pytest.approx(float(az.ess(linear_nuts)["theta"].min()))
    assert table.loc["NPE", "wall_time"] == 1.5
    assert table.loc["NUTS", "wall_time"] == group(linear_nuts, "posterior").attrs["sampling_time"]
    assert np.isnan(table.loc["exact", "wall_time"])
    assert table.loc["NUTS", "num_draws"] == 600


def test_compare_figures_render(comparison):
    pair = comparison.plot_pair(num_draws=300)
    forest = comparison.plot_forest()
    assert sum(ax.get_visible() and ax.has_data() for ax in pair.axes) == 3  # a 2-d variable: a scatter, 2 marginals
    assert [t.get_text() for t in pair.legends[0].get_texts()] == ["exact", "NPE", "NUTS", "shifted"]
    drawn = [line.get_xdata() for ax in forest.axes for line in ax.lines]
    assert any(np.isfinite(np.asarray(x, dtype=float)).any() for x in drawn)  # intervals, not NaN
    for fig in (pair, forest):
        assert _png(fig).startswith(b"\x89PNG")


def test_compare_errors():
    a = _posterior(theta=np.zeros((1, 50, 2)))
    b = _posterior(phi=np.zeros((1, 50)))
    with pytest.raises(KeyError, match="reference 'NUTS'"):
        lfi.compare({"NPE": a}, reference="NUTS")
    with pytest.raises(ValueError, match="share no variables"):
        lfi.compare({"NPE": a, "B": b}, reference="NPE")
    with pytest.raises(TypeError, match=rf"posteriors\['B'\] must be an {result_type_name()}"):
        lfi.compare({"NPE": a, "B": {"theta": np.zeros((50, 2))}}, reference="NPE")
