import matplotlib
import pyro
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
