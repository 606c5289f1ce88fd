"""Same seed, same simulations: in this process, on a process pool, on a real dask cluster."""

from concurrent.futures import ProcessPoolExecutor

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi

from .models import moons_model, multi_model


def assert_same(a: lfi.Simulations, b: lfi.Simulations):
    assert a.seed == b.seed and set(a.values) == set(b.values)
    for name in a.values:
        assert torch.equal(a[name].nan_to_num(9.0), b[name].nan_to_num(9.0)), name
    assert torch.equal(a.status, b.status)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_one_worker_two_processes_and_dask_give_the_same_rows(dask_client):
    kwargs = dict(seed=4, batch_size=70, progress=False)
    serial = lfi.simulate(multi_model, 500, **kwargs)
    assert_same(serial, lfi.simulate(multi_model, 500, workers=1, **kwargs))
    assert_same(serial, lfi.simulate(multi_model, 500, workers=2, **kwargs))
    assert_same(serial, lfi.simulate(multi_model, 500, executor=dask_client, **kwargs))
    assert_same(serial, lfi.simulate(multi_model, 500, executor=dask_client.get_executor(), **kwargs))
    other = lfi.simulate(multi_model, 500, seed=5, batch_size=70, progress=False)
    assert not torch.equal(serial["x"], other["x"])


def test_closures_and_lambdas_travel_with_cloudpickle(dask_client):
    shift = torch.tensor([10.0, -10.0])

    def model():
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(lambda t: t + shift + 0.1 * torch.randn(t.shape), theta))

    serial = lfi.simulate(model, 64, seed=0, batch_size=16, progress=False)
    with ProcessPoolExecutor(2) as pool:
        assert_same(serial, lfi.simulate(model, 64, seed=0, batch_size=16, progress=False, executor=pool))
    assert_same(serial, lfi.simulate(model, 64, seed=0, batch_size=16, progress=False, executor=dask_client))
    assert (serial["x"] - serial["theta"] - shift).abs().max() < 1.0


def test_fixed_parameters_are_split_with_the_chunks():
    theta = torch.linspace(-0.9, 0.9, 40).reshape(20, 2)
    serial = lfi.simulate(moons_model, 20, seed=1, batch_size=6, parameters={"theta": theta}, progress=False)
    pooled = lfi.simulate(moons_model, 20, seed=1, batch_size=6, parameters={"theta": theta}, progress=False,
                          workers=2)
    assert torch.equal(pooled["theta"], theta)
    assert_same(serial, pooled)


def test_executor_arguments_are_checked():
    with ProcessPoolExecutor(1) as pool, pytest.raises(ValueError, match="not both"):
        lfi.simulate(moons_model, 5, workers=2, executor=pool, progress=False)
    with pytest.raises(ValueError, match="positive int"):
        lfi.simulate(moons_model, 5, workers=0, progress=False)
    with pytest.raises(TypeError, match=r"concurrent.futures.Executor .* got str"):
        lfi.simulate(moons_model, 5, executor="dask", progress=False)


def test_failures_and_timeouts_on_dask_workers(dask_client):
    """Timeouts fork from a dask worker thread (dask workers are daemonic processes)."""
    from .sim_models import treacherous_model

    kwargs = dict(seed=0, batch_size=3, timeout=0.5, progress=False)
    serial = lfi.simulate(treacherous_model, 36, **kwargs)
    assert set(serial.summary()) == {"ok", "nonfinite", "exception", "timeout"}
    assert_same(serial, lfi.simulate(treacherous_model, 36, executor=dask_client, **kwargs))
