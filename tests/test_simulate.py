import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr

import pyro_lfi as lfi

from .models import fragile_model, moons, moons_model


def test_rows_sites_and_seed():
    sims = lfi.simulate(moons_model, 250, seed=3, batch_size=100, progress=False)
    assert len(sims) == 250 and sims.seed == 3
    assert sims.latent_names == ("theta",) and sims.observed_names == ("x",)
    assert sims["theta"].shape == (250, 2) and sims["x"].shape == (250, 2)
    assert sims.valid.all() and (sims["theta"].abs() <= 1).all()
    assert sims["theta"].std(0).min() > 0.3  # drawn from the prior, not repeated


def test_same_seed_same_simulations_and_global_rng_untouched():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = lfi.simulate(moons_model, 300, seed=1, batch_size=128, progress=False)
    after = torch.rand(1)
    b = lfi.simulate(moons_model, 300, seed=1, batch_size=128, progress=False)
    c = lfi.simulate(moons_model, 300, seed=2, batch_size=128, progress=False)
    assert torch.equal(before, after)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["theta"], b["theta"])
    assert not torch.equal(a["x"], c["x"])


def test_default_batch_size_follows_memory_and_spreads_over_workers(tmp_path):
    from pyro_lfi.simulation.plan import BATCH_BYTES, MIN_BATCH_ROWS, MIN_BATCHES, BatchPlan

    from .sim_models import treacherous_model

    plan = BatchPlan.probe(moons_model, None, 0, (), {})
    row_bytes = 4 * 4  # theta and x, two float32 each
    assert plan.default_batch_size(10**12) == BATCH_BYTES // row_bytes
    assert plan.default_batch_size(100) == 100
    assert plan.default_batch_size(10_000) == MIN_BATCH_ROWS
    assert plan.default_batch_size(640_000) == 640_000 // MIN_BATCHES
    # a simulator of one parameter set at a time costs the same in small batches: spread them
    looped = BatchPlan.probe(treacherous_model, None, 0, (), {})
    assert looped.default_batch_size(640) == 640 // MIN_BATCHES
    # the batching is the same with a store (each batch a file); the rows equal those of that batch size
    stored = lfi.simulate(moons_model, 640_000, seed=4, store=tmp_path / "s", progress=False)
    assert len(list((tmp_path / "s").glob("chunk-*.nc"))) == MIN_BATCHES
    explicit = lfi.simulate(moons_model, 640_000, seed=4, batch_size=10_000, progress=False)
    default = lfi.simulate(moons_model, 640_000, seed=4, progress=False)
    assert torch.equal(stored["x"], explicit["x"]) and torch.equal(default["x"], explicit["x"])


def test_observed_sites_are_unconditioned():
    sims = lfi.simulate(moons_model, 50, torch.zeros(2), seed=0, progress=False)
    assert sims["x"].abs().sum(-1).min() > 0  # fresh simulations, not the observation


def test_failures_are_recorded_and_the_campaign_goes_on():
    sims = lfi.simulate(fragile_model, 400, seed=0, batch_size=50, progress=False)
    assert len(sims) == 400
    theta, status = sims["theta"], sims.status
    raised = theta[:, 1] > 0.8
    nan = (theta[:, 0] > 0.5) & ~raised
    assert (status[raised] == lfi.Status.EXCEPTION).all()
    assert (status[nan] == lfi.Status.NONFINITE).all()
    assert (status[~raised & ~nan] == lfi.Status.OK).all()
    assert all("solver diverged" in m for m in sims.message[raised.numpy()])
    assert torch.isfinite(theta).all()  # parameters kept for failed rows
    assert torch.isnan(sims["x"][raised]).all()
    assert sims.summary() == {"ok": int((~raised & ~nan).sum()), "nonfinite": int(nan.sum()),
                              "exception": int(raised.sum())}


def test_fixed_parameters():
    theta = torch.tensor([[0.1, 0.2], [-0.5, 0.5], [0.9, -0.9]])
    sims = lfi.simulate(moons_model, 3, seed=0, parameters={"theta": theta}, progress=False)
    assert torch.equal(sims["theta"], theta)
    with pytest.raises(ValueError, match=r"expected \(3, 2\)"):
        lfi.simulate(moons_model, 3, parameters={"theta": theta[:2]}, progress=False)
    with pytest.raises(ValueError, match="not a latent site"):
        lfi.simulate(moons_model, 3, parameters={"phi": theta}, progress=False)


def test_model_with_its_own_plate():
    def model(x=None):
        theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
        with pyro.plate("trials", 4):
            return pyro.sample("x", lfi.Simulator(moons, theta), obs=x)

    sims = lfi.simulate(model, 10, seed=0, batch_size=3, progress=False)
    assert sims["theta"].shape == (10, 2) and sims["x"].shape == (10, 4, 2)
    assert sims["x"][0].std(0).min() > 0  # trials are independent draws


def test_indexing_concat_save_load(tmp_path):
    sims = lfi.simulate(fragile_model, 60, seed=0, progress=False)
    head, tail = sims[:20], sims[20:]
    both = head + tail
    assert torch.equal(both["x"].nan_to_num(7.0), sims["x"].nan_to_num(7.0))
    assert len(sims[sims.valid]) == sims.num_valid
    path = tmp_path / "sims.nc"
    sims.save(path)
    loaded = lfi.Simulations.load(path)
    assert loaded.seed == 0 and loaded.latent_names == ("theta",)
    assert torch.equal(loaded.status, sims.status)
    assert torch.allclose(loaded["theta"], sims["theta"])
    assert list(loaded.message) == list(sims.message)
    ds = xr.open_dataset(path)  # readable without pyro_lfi
    assert ds["theta"].dims == ("simulation", "theta_dim_0") and ds.attrs["seed"] == 0
    ds.close()


def test_concat_refuses_different_sites():
    a = lfi.simulate(moons_model, 5, seed=0, progress=False)
    b = lfi.simulate(fragile_model, 5, seed=0, progress=False)
    b.values["y"] = b.values.pop("x")
    with pytest.raises(ValueError, match="different sites"):
        a + b


def test_model_without_data_site():
    def model():
        pyro.sample("theta", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="no data site"):
        lfi.simulate(model, 5, progress=False)


def test_all_invalid_warns():
    def model():
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        pyro.sample("x", lfi.Simulator(lambda t: t * np.nan, theta))

    with pytest.warns(UserWarning, match="all 5 simulations are invalid"):
        sims = lfi.simulate(model, 5, progress=False)
    assert sims.num_valid == 0


def test_progress_bar_shows_rate_failures_and_time_left(capsys):
    lfi.simulate(fragile_model, 200, seed=0, batch_size=20)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "200/200" in bar and "sim/s" in bar and "failed=" in bar
    assert "<00:00" in bar  # elapsed<remaining
    assert int(bar.split("failed=")[1].split("]")[0]) > 0
    lfi.simulate(fragile_model, 20, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_a_declared_event_shape_spares_the_probe_simulation():
    calls = []

    def counted(theta):
        calls.append(len(theta))
        return theta * 2.0

    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return pyro.sample("x", lfi.Simulator(counted, theta, event_shape=(2,)), obs=x)

    sims = lfi.simulate(model, 50, seed=0, progress=False)
    assert calls == [50] and sims.num_valid == 50  # one vectorized call, no probe simulation
    torch.testing.assert_close(sims["x"], 2 * sims["theta"])

    def wrong(theta):
        return torch.cat([theta, theta], -1)

    def misdeclared(x=None):
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return pyro.sample("x", lfi.Simulator(wrong, theta, event_shape=(2,)), obs=x)

    with pytest.raises(lfi.DeclaredShapeError, match=r"event shape \(4,\), but event_shape=\(2,\) was declared"):
        lfi.simulate(misdeclared, 50, seed=0, progress=False)


def test_the_probe_simulates_when_the_model_uses_the_output():
    def model(x=None):
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        x = pyro.sample("x", lfi.Simulator(lambda t: t + 1.0, theta, event_shape=(2,)), obs=x)
        if torch.isnan(x).any():
            raise ValueError("the model reads its simulator's output")
        return pyro.sample("y", lfi.Simulator(lambda v: v.sum(-1, keepdim=True), x, event_shape=(1,)))

    sims = lfi.simulate(model, 20, seed=0, progress=False)
    assert sims.num_valid == 20 and set(sims.observed_names) == {"x", "y"}


def test_options_object_and_keyword_shorthands_give_the_same_campaign(tmp_path):
    options = lfi.SimulationOptions(batch_size=40, progress=False, store=tmp_path / "a")
    a = lfi.simulate(moons_model, 100, seed=5, options=options)
    b = lfi.simulate(moons_model, 100, seed=5, batch_size=40, progress=False, store=tmp_path / "b")
    assert torch.equal(a["x"], b["x"]) and (tmp_path / "a").is_dir()
    # a shorthand overrides the object's field
    c = lfi.simulate(moons_model, 100, seed=5, options=options.updated(store=None), batch_size=100)
    assert not torch.equal(a["x"], c["x"])


def test_a_model_argument_named_like_an_option_goes_through_model_kwargs():
    def model(store=0.0):
        theta = pyro.sample("theta", dist.Normal(store, 1.0))
        return pyro.sample("x", lfi.Simulator(lambda t: t + 0.01 * torch.randn_like(t), theta))

    sims = lfi.simulate(model, 50, seed=0, progress=False, model_kwargs={"store": 100.0})
    assert sims["theta"].mean() > 90


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"timeout": -1.0}, {"workers": 0}])
def test_invalid_options_are_refused_naming_the_option(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        lfi.SimulationOptions(**bad)
    with pytest.raises(ValueError, match=name):
        lfi.simulate(moons_model, 10, progress=False, **bad)
    with pytest.raises(TypeError, match="SimulationOptions"):
        lfi.simulate(moons_model, 10, options={"batch_size": 5})
