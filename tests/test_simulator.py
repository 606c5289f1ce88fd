import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pyro_lfi as lfi

from .models import moons, numpy_simulator


def test_sample_shapes_without_and_with_plate():
    theta = torch.zeros(2)
    assert lfi.Simulator(moons, theta).sample().shape == (2,)
    with pyro.plate("sims", 7):
        theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
        x = pyro.sample("x", lfi.Simulator(moons, theta))
    assert theta.shape == (7, 2) and x.shape == (7, 2)


def test_expand_and_sample_shape():
    d = lfi.Simulator(moons, torch.zeros(2)).expand([4, 3])
    assert d.batch_shape == (4, 3)
    assert d.sample((5,)).shape == (5, 4, 3, 2)


def test_iid_plate_broadcasts_parameters():
    calls = []

    def sim(theta):
        calls.append(theta.shape)
        return theta + torch.randn(theta.shape)

    def model():
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("trials", 5):
            return pyro.sample("x", lfi.Simulator(sim, theta))

    assert model().shape == (5, 2)
    assert calls == [(5, 2)]


def test_explicit_param_event_dims_resolve_ambiguity():
    # a plate of size 2 over a parameter of event size 2 is ambiguous without param_event_dims
    def sim(theta):
        return theta.sum(-1, keepdim=True)

    d = lfi.Simulator(sim, torch.tensor([1.0, 2.0]), param_event_dims=1).expand([2])
    assert torch.equal(d.sample(), torch.tensor([[3.0], [3.0]]))


def test_unbatched_simulator_loops():
    def one(theta):
        assert theta.shape == (2,)
        return theta.sum().reshape(1)

    theta = torch.arange(6.0).reshape(3, 2)
    x = lfi.Simulator(one, theta, batched=False).expand([3]).sample()
    assert torch.equal(x, torch.tensor([[1.0], [5.0], [9.0]]))


def test_numpy_simulator():
    x = lfi.Simulator(numpy_simulator, torch.ones(4, 3)).expand([4]).sample()
    assert isinstance(x, torch.Tensor) and x.shape == (4, 2) and x.dtype == torch.float32


def test_declared_event_shape_is_checked():
    with pytest.raises(lfi.SimulatorShapeError, match=r"event_shape=\(3,\) was declared"):
        lfi.Simulator(moons, torch.zeros(2), event_shape=(3,)).sample()


def test_output_without_batch_dims_is_an_error():
    d = lfi.Simulator(lambda theta: torch.zeros(2), torch.zeros(4, 2)).expand([4])
    with pytest.raises(lfi.SimulatorShapeError, match=r"must return \(N, \*event_shape\), here N = 4"):
        d.sample()


def test_inconsistent_shapes_in_a_loop_are_an_error():
    def ragged(theta):
        return torch.zeros(int(theta.item()) + 1)

    d = lfi.Simulator(ragged, torch.tensor([0.0, 1.0]), batched=False).expand([2])
    with pytest.raises(lfi.SimulatorShapeError, match="same shape"):
        d.sample()


def test_log_prob_raises_a_dedicated_error():
    d = lfi.Simulator(moons, torch.zeros(2))
    with pytest.raises(lfi.SimulatorLikelihoodError, match="no likelihood") as info:
        d.log_prob(torch.zeros(2))
    assert isinstance(info.value, NotImplementedError)


def test_likelihood_based_inference_fails_loudly():
    from .models import moons_model

    trace = poutine.trace(moons_model).get_trace(torch.zeros(2))
    with pytest.raises(lfi.SimulatorLikelihoodError):
        trace.log_prob_sum()


def test_pickles():
    d = lfi.Simulator(moons, torch.zeros(3, 2), event_shape=(2,)).expand([3])
    clone = pickle.loads(pickle.dumps(d))
    assert clone.batch_shape == (3,) and clone.sample().shape == (3, 2)
