"""Campaigns stream to disk, resume where they stopped, and survive SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr

import pyro_lfi as lfi
from pyro_lfi.simulation.store import CampaignMismatchError

from .models import fragile_model, moons
from .test_parallel import assert_same

ROOT = Path(__file__).resolve().parents[1]


def counting_model(calls: list):
    """Two moons whose simulator appends the batch size of each call to ``calls``."""

    def simulator(theta):
        calls.append(len(theta))
        return moons(theta)

    def model():
        theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", lfi.Simulator(simulator, theta))

    return model


def chunk_files(store: Path) -> list[str]:
    return sorted(f for f in os.listdir(store) if f.startswith("chunk-"))


def test_store_holds_every_chunk_and_opens_with_plain_xarray(tmp_path):
    sims = lfi.simulate(fragile_model, 95, seed=2, batch_size=20, store=tmp_path / "camp", progress=False)
    assert chunk_files(tmp_path / "camp") == [f"chunk-{c:09d}.nc" for c in range(5)]
    with xr.open_mfdataset(str(tmp_path / "camp" / "chunk-*.nc"), combine="nested", concat_dim="simulation") as ds:
        assert ds.sizes["simulation"] == 95 and ds.attrs["seed"] == 2
        assert (ds["status"].values == sims.status.numpy()).all()
        assert torch.equal(torch.as_tensor(ds["theta"].values), sims["theta"])
        assert list(ds["message"].values) == list(sims.message)


def test_rerun_resumes_and_runs_only_missing_chunks(tmp_path):
    calls: list[int] = []
    model = counting_model(calls)
    store = tmp_path / "camp"
    first = lfi.simulate(model, 100, seed=3, batch_size=30, store=store, progress=False)
    probe_calls = len(calls) - 4
    assert calls[probe_calls:] == [30, 30, 30, 10]
    (store / "chunk-000000001.nc").unlink()
    (store / "chunk-000000003.nc").unlink()
    calls.clear()
    again = lfi.simulate(model, 100, batch_size=30, store=store, progress=False)  # seed read from the store
    assert calls[probe_calls:] == [30, 10]
    assert_same(first, again)
    calls.clear()
    lfi.simulate(model, 100, seed=3, batch_size=30, store=store, progress=False)
    assert calls[probe_calls:] == []


def test_a_different_campaign_is_refused(tmp_path):
    store = tmp_path / "camp"
    lfi.simulate(fragile_model, 40, seed=0, batch_size=20, store=store, progress=False)
    with pytest.raises(CampaignMismatchError, match="seed: stored 0, asked 1"):
        lfi.simulate(fragile_model, 40, seed=1, batch_size=20, store=store, progress=False)
    with pytest.raises(CampaignMismatchError, match="batch_size"):
        lfi.simulate(fragile_model, 40, seed=0, batch_size=10, store=store, progress=False)
    theta = torch.full((40, 2), 0.3)
    with pytest.raises(CampaignMismatchError, match=r"parameters\.theta"):
        lfi.simulate(fragile_model, 40, seed=0, batch_size=20, store=store, parameters={"theta": theta},
                     progress=False)


def test_sigkilled_campaign_resumed_equals_the_uninterrupted_one(tmp_path):
    store = tmp_path / "camp"
    script = (
        "import pyro_lfi as lfi\n"
        "from tests.sim_models import slow_model\n"
        f"lfi.simulate(slow_model, 300, seed=7, batch_size=15, store={str(store)!r}, progress=False)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (store.exists() and len(chunk_files(store)) >= 3):
            assert child.poll() is None, "the campaign ended before it could be killed"
            assert time.monotonic() < deadline, "the campaign wrote no chunks in 60 s"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    written = len(chunk_files(store))
    assert 3 <= written < 20

    from .sim_models import slow_model

    resumed = lfi.simulate(slow_model, 300, seed=7, batch_size=15, store=store, progress=False)
    uninterrupted = lfi.simulate(slow_model, 300, seed=7, batch_size=15, progress=False)
    assert_same(resumed, uninterrupted)
    assert len(chunk_files(store)) == 20 and not list(store.glob(".*.tmp"))


def test_store_path_must_be_a_directory(tmp_path):
    file = tmp_path / "sims.nc"
    file.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        lfi.simulate(fragile_model, 5, store=file, progress=False)
