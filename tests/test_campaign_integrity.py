"""Campaigns on disk and on workers: fingerprints, the lock, damaged files, same rows on any
executor, workers that die."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.simulation.store import CampaignMismatchError, SimulationStore, StoreInUseError

from .models import moons_model
from .sim_models import crashing_model

ROOT = Path(__file__).resolve().parents[1]


def assert_same(a: lfi.Simulations, b: lfi.Simulations):
    """Same rows, up to float rounding (other processes may sum in another order)."""
    assert set(a.values) == set(b.values) and torch.equal(a.status, b.status)
    for name in a.values:
        assert torch.allclose(a[name].nan_to_num(9.0), b[name].nan_to_num(9.0), rtol=1e-6, atol=1e-6), name


def shifted_model(shift: float = 0.0, scale: float = 1.0):
    def simulator(theta):
        return theta + shift + 0.1 * torch.randn(theta.shape)

    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(0.0, scale).expand([2]).to_event(1))
        return pyro.sample("x", lfi.Simulator(simulator, theta), obs=x)

    return model


def other_simulator(theta):
    return theta - 0.1 * torch.randn(theta.shape)


def test_resuming_with_a_changed_prior_simulator_or_arguments_is_refused(tmp_path):
    store = tmp_path / "camp"
    first = lfi.simulate(shifted_model(), 40, seed=0, batch_size=20, store=store, progress=False)
    with pytest.raises(CampaignMismatchError, match=r"sites\.theta\.distribution.*scale.*stored 1\.0, asked 2\.0"):
        lfi.simulate(shifted_model(scale=2.0), 40, seed=0, batch_size=20, store=store, progress=False)
    with pytest.raises(CampaignMismatchError, match=r"sites\.x\.simulator\.closure"):
        lfi.simulate(shifted_model(shift=1.0), 40, seed=0, batch_size=20, store=store, progress=False)

    def swapped(x=None):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        return pyro.sample("x", lfi.Simulator(other_simulator, theta), obs=x)

    with pytest.raises(CampaignMismatchError, match=r"sites\.x\.simulator\.name.*other_simulator"):
        lfi.simulate(swapped, 40, seed=0, batch_size=20, store=store, progress=False)
    # the refusal changed nothing on disk, and the same campaign still resumes
    assert_same(first, lfi.simulate(shifted_model(), 40, seed=0, batch_size=20, store=store, progress=False))
    # an explicit override, for a change that does not alter the rows
    forced = lfi.simulate(shifted_model(scale=2.0), 40, seed=0, batch_size=20, store=store, force=True, progress=False)
    assert_same(first, forced)


def test_model_arguments_are_part_of_the_fingerprint_up_to_rounding(tmp_path):
    def model(loc, x=None):
        theta = pyro.sample("theta", dist.Normal(loc, 1.0).to_event(1))
        return pyro.sample("x", lfi.Simulator(lambda t: t + 0.1 * torch.randn(t.shape), theta), obs=x)

    store, loc = tmp_path / "camp", torch.tensor([0.1, 0.2, 0.3])
    first = lfi.simulate(model, 40, loc, seed=0, batch_size=20, store=store, progress=False)
    # recomputed on another CPU, an argument may differ in its last bits: still the same campaign
    again = lfi.simulate(model, 40, loc * (1 + 1e-7), seed=0, batch_size=20, store=store, progress=False)
    assert_same(first, again)
    with pytest.raises(CampaignMismatchError, match=r"arguments\.args\[0\]\.values\[2\]: stored 0\.3"):
        lfi.simulate(model, 40, loc + torch.tensor([0.0, 0.0, 0.1]), seed=0, batch_size=20, store=store,
                     progress=False)


def test_one_campaign_per_store_at_a_time(tmp_path):
    store = tmp_path / "camp"
    lfi.simulate(moons_model, 40, seed=0, batch_size=20, store=store, progress=False)
    manifest = SimulationStore.read_manifest(store)
    with SimulationStore(store, manifest):  # another campaign holds the store
        with pytest.raises(StoreInUseError, match=r"in use by process \d+"):
            lfi.simulate(moons_model, 40, seed=0, batch_size=20, store=store, progress=False)
    # a lock left by a process that died is taken over
    script = (
        "import os, sys\n"
        "from pyro_lfi.simulation.store import SimulationStore\n"
        f"s = SimulationStore({str(store)!r}, SimulationStore.read_manifest({str(store)!r})).__enter__()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)
    assert "process" in (store / "campaign.lock").read_text()
    lfi.simulate(moons_model, 40, seed=0, batch_size=20, store=store, progress=False)


def test_damaged_chunks_are_quarantined_and_simulated_again(tmp_path):
    store = tmp_path / "camp"
    first = lfi.simulate(moons_model, 100, seed=1, batch_size=20, store=store, progress=False)
    chunk = store / "chunk-000000002.nc"
    chunk.write_bytes(chunk.read_bytes()[:300])  # truncated by a full disk
    (store / "chunk-000000004.nc").write_bytes(b"\x00" * 64)  # garbage
    with pytest.warns(UserWarning, match="batch 2 of the store .* could not be read back"):
        again = lfi.simulate(moons_model, 100, seed=1, batch_size=20, store=store, progress=False)
    assert_same(first, again)
    assert len(list((store / "quarantine").iterdir())) == 2
    assert len(list(store.glob("chunk-*.nc"))) == 5


def test_same_seed_same_rows_on_any_executor():
    kwargs = dict(seed=3, progress=False)
    serial = lfi.simulate(moons_model, 20_000, **kwargs)  # 5 batches
    with ThreadPoolExecutor(2) as threads:
        assert_same(serial, lfi.simulate(moons_model, 20_000, executor=threads, **kwargs))
    assert_same(serial, lfi.simulate(moons_model, 20_000, workers=2, **kwargs))
    assert_same(serial, lfi.simulate(moons_model, 20_000, timeout=30.0, **kwargs))
    assert_same(serial, lfi.simulate(moons_model, 20_000, isolate=True, **kwargs))


def test_a_simulator_that_kills_its_worker_loses_only_its_rows():
    kwargs = dict(seed=2, batch_size=20, progress=False)
    with pytest.warns(UserWarning, match="worker process died"):
        pooled = lfi.simulate(crashing_model, 120, workers=2, **kwargs)
    crashed = pooled["theta"][:, 0] > 0.8
    assert crashed.any() and len(pooled) == 120
    assert torch.equal(pooled.valid, ~crashed)
    assert all("SIGSEGV" in m for m in pooled.message[crashed.numpy()])
    # in this process, isolate=True survives the same simulator with the same rows
    assert_same(pooled, lfi.simulate(crashing_model, 120, isolate=True, **kwargs))


def test_fingerprints_of_code_and_large_tensors():
    from pyro_lfi.simulation.fingerprint import code_identity, describe, differences

    def countdown(n):  # a closure that captures itself
        return n if n <= 0 else countdown(n - 1)

    assert code_identity(countdown)["code"] == code_identity(countdown)["code"]

    class Simulator:
        def __init__(self, gain):
            self.gain = gain

        def __call__(self, theta):
            return self.gain * theta

    assert code_identity(Simulator(1.0))["name"].endswith("Simulator")
    big = torch.linspace(0.0, 1.0, 10_000)
    assert differences(describe(big), describe(big * (1 + 1e-7))) == []
    assert differences(describe(big), describe(big.flip(0)))  # same values, other order
