"""C2ST between ArviZ posteriors (InferenceData under ArviZ 0.x, DataTree under 1.x)."""

import numpy as np
import pytest

from pyro_lfi.arviz_compat import dataset, from_datasets
from pyro_lfi.diagnostics import c2st

pytestmark = pytest.mark.arviz


def _idata(shift=0.0, chains=1, seed=0, **extra):
    rng = np.random.default_rng(seed)
    draws = 1000 // chains
    posterior = {"theta": rng.normal(shift, 1.0, (chains, draws, 2)), "s": rng.normal(0, 1, (chains, draws))}
    posterior.update(extra)
    return from_datasets({"posterior": dataset(posterior)})


def test_c2st_inference_data_same_and_shifted():
    same = c2st(_idata(seed=0), _idata(chains=4, seed=1), classifier="fast")
    shifted = c2st(_idata(seed=0), _idata(shift=1.5, chains=2, seed=1), classifier="fast")
    assert same < 0.6, same
    assert shifted > 0.75, shifted


def test_c2st_inference_data_against_dict_and_var_names():
    a = _idata(seed=0)
    b = {"theta": np.random.default_rng(2).normal(0, 1, (1000, 2)) + 2.0}
    assert c2st(a, b, var_names=["theta"], classifier="fast") > 0.8
    with pytest.raises(ValueError, match="different keys"):
        c2st(a, b, classifier="fast")  # a also has "s"


def test_c2st_inference_data_errors():
    with pytest.raises(ValueError, match=r"\[.phi.\] are not in the posterior of a"):
        c2st(_idata(), _idata(), var_names=["theta", "phi"])
    with pytest.raises(ValueError, match="without a posterior group"):
        c2st(_idata(), from_datasets({"prior": dataset({"theta": np.zeros((1, 10, 2))})}))
