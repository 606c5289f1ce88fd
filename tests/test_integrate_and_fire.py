"""The exponential integrate-and-fire neuron: the leaky limit against its closed-form rate,
batching, determinism, spike features (NaN where undefined), the model's trials plate, errors."""

import math

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.errors import ObservationError
from pyro_lfi.models import integrate_and_fire as iaf

SHORT = iaf.Protocol(duration=60.0, t_on=10.0, t_off=60.0)
TYPICAL = [20.0, -68.0, 2.0, -50.0, 2.0]  # tau, e_leak, delta_t, v_t, sigma


@pytest.mark.parametrize("tau,e_leak,v_t,drive", [(20.0, -70.0, -50.0, 30.0), (10.0, -65.0, -52.0, 20.0),
                                                  (8.0, -72.0, -48.0, 40.0)])
def test_the_leaky_limit_fires_at_the_closed_form_rate(tau, e_leak, v_t, drive):
    """Delta_T = 0, sigma = 0, a constant drive: every interval is the exact period
    t_ref + tau ln((E_L + mu - V_reset) / (E_L + mu - V_T)), to the Euler step's accuracy."""
    protocol = iaf.Protocol(duration=400.0, dt=0.01, t_on=0.0, t_off=400.0, amplitude=drive)
    raster = iaf.simulate(torch.tensor([[tau, e_leak, 0.0, v_t, 0.0]], dtype=torch.float64), protocol=protocol)
    count, latency, isi_mean, isi_cv = iaf.spike_features(raster, protocol)[0].tolist()
    rate = iaf.lif_firing_rate(tau, e_leak, v_t, drive, protocol)
    assert 1000.0 / isi_mean == pytest.approx(rate, rel=2e-3)
    assert isi_cv < 1e-3
    # the first spike starts from E_L, not from the reset: its latency has the same closed form
    v_inf = e_leak + drive
    assert latency == pytest.approx(tau * math.log((v_inf - e_leak) / (v_inf - v_t)), rel=2e-3, abs=0.02)
    assert abs(count - (1 + (400.0 - latency) * rate / 1000.0)) <= 1


def test_below_rheobase_the_leaky_neuron_is_silent_and_the_exponential_one_is_not():
    """V_inf = E_L + mu = -51 mV stays under V_T = -50 mV: the leaky limit never fires (rate 0),
    while Delta_T = 3 mV lowers the rheobase (V_T - Delta_T) and the neuron fires."""
    protocol = iaf.Protocol(duration=500.0, dt=0.05, t_on=0.0, t_off=500.0, amplitude=19.0)
    assert iaf.lif_firing_rate(20.0, -70.0, -50.0, 19.0, protocol) == 0.0
    params = torch.tensor([[20.0, -70.0, 0.0, -50.0, 0.0], [20.0, -70.0, 3.0, -50.0, 0.0]])
    counts = iaf.spike_features(iaf.simulate(params, protocol=protocol), protocol)[:, 0]
    assert counts[0] == 0 and counts[1] >= 2


def test_batched_equals_one_row_at_a_time_and_the_seed_fixes_the_noise():
    torch.manual_seed(0)
    params = torch.stack([torch.stack([p.sample((3, 2)) for p in iaf.integrate_and_fire_prior().values()], -1)])[0]
    noise = torch.randn(3, 2, SHORT.num_steps)
    batched = iaf.simulate(params, noise, protocol=SHORT)
    assert batched.shape == (3, 2, SHORT.num_steps) and batched.dtype == torch.bool
    rows = torch.stack([torch.stack([iaf.simulate(params[i, j], noise[i, j], protocol=SHORT) for j in range(2)])
                        for i in range(3)])
    assert torch.equal(batched, rows)
    torch.manual_seed(5)
    first = iaf.simulate(params, protocol=SHORT)
    torch.manual_seed(5)
    assert torch.equal(first, iaf.simulate(params, protocol=SHORT))


def test_spike_features_of_a_known_raster_and_nan_where_undefined():
    times = SHORT.times
    raster = torch.zeros(4, SHORT.num_steps, dtype=torch.bool)
    for row, spikes in enumerate([[5.0, 20.0, 25.0, 35.0], [30.0], [15.0, 45.0], []]):
        for t in spikes:
            raster[row, int(torch.argmin((times - t).abs()))] = True
    features = iaf.spike_features(raster, SHORT)
    # row 0: the spike at 5 ms is before the step; ISIs 5 and 10 ms
    torch.testing.assert_close(features[0], torch.tensor([3.0, 10.0, 7.5, 2.5 / 7.5]), atol=1e-4, rtol=0)
    assert features[1, :2].tolist() == pytest.approx([1.0, 20.0]) and features[1, 2:].isnan().all()
    assert features[2, 2] == pytest.approx(30.0) and features[2, 3].isnan()
    assert features[3, 0] == 0 and features[3, 1:].isnan().all()
    finite = iaf.observation(features, SHORT)
    assert torch.isfinite(finite).all() and torch.equal(finite[:, 0].floor(), features[:, 0])
    assert finite[3, 1:].tolist() == [50.0, 50.0, 0.0]


def test_the_model_has_a_trials_plate_and_its_single_trial_version_for_a_learned_likelihood():
    sims = lfi.simulate(iaf.integrate_and_fire_model, 20, seed=0, progress=False, model_kwargs={"protocol": SHORT,
                                                                                                  "num_trials": 3})
    assert sims.values["x"].shape == (20, 3, 4) and sims.valid.all()
    assert set(iaf.PARAMETER_NAMES) <= set(sims.values)
    single = lfi.simulate(iaf.integrate_and_fire_model, 20, seed=0, progress=False,
                          model_kwargs={"protocol": SHORT, "num_trials": 1})
    assert single.values["x"].shape == (20, 1, 4)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"params must be \[\.\.\., 5\]"):
        iaf.simulate(torch.zeros(3, 4), protocol=SHORT)
    with pytest.raises(ValueError, match="noise must be"):
        iaf.simulate(torch.tensor([TYPICAL]), torch.zeros(1, 3), protocol=SHORT)
    with pytest.raises(ValueError, match="tau > 0"):
        iaf.simulate(torch.tensor([[0.0, -70.0, 1.0, -50.0, 1.0]]), protocol=SHORT)
    with pytest.raises(ValueError, match="t_on < t_off"):
        iaf.Protocol(t_on=100.0, t_off=50.0)
    with pytest.raises(ObservationError, match=r"site 'x'.*\[\.\.\., 10, 4\].*num_trials=len\(x\)"):
        iaf.integrate_and_fire_model(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="num_trials must be a positive int"):
        iaf.integrate_and_fire_model(num_trials=0)


def test_the_variable_trials_model_keeps_a_uniform_number_of_trials_and_pads_with_nan():
    sims = lfi.simulate(iaf.variable_trials_model, 600, seed=0, progress=False,
                        model_kwargs={"protocol": SHORT, "max_trials": 5, "min_trials": 2})
    x = sims.values["x"]
    assert x.shape == (600, 5, 4)
    present = torch.isfinite(x).all(-1)
    kept = present.sum(-1)
    # the kept trials come first, whole: a trial is all finite or all NaN
    assert torch.equal(present, torch.arange(5) < kept.unsqueeze(-1)) and torch.isnan(x[~present]).all()
    counts = torch.bincount(kept, minlength=6)[2:].float()  # 2..5 kept, 150 each expected
    assert counts.sum() == 600 and ((counts - 150).abs() / (150 * 0.75) ** 0.5).max() < 4
    assert torch.equal(sims.valid, kept == 5)  # a padded simulation is flagged non-finite
    sims = lfi.simulate(iaf.variable_trials_model, 8, seed=0, progress=False,
                        model_kwargs={"protocol": SHORT, "max_trials": 4, "min_trials": 4})
    assert sims.values["x"].shape == (8, 4, 4) and sims.valid.all()


def test_pad_trials_and_the_variable_trials_model_errors():
    x = torch.ones(3, 4)
    padded = iaf.pad_trials(x, 10)
    assert padded.shape == (10, 4) and torch.equal(padded[:3], x) and padded[3:].isnan().all()
    with pytest.raises(ValueError, match="do not fit in max_trials=2"):
        iaf.pad_trials(x, 2)
    with pytest.raises(ValueError, match="1 <= min_trials <= max_trials"):
        iaf.variable_trials_model(min_trials=4, max_trials=3)
    with pytest.raises(ObservationError, match=r"\[\.\.\., 10, 4\]: pad n trials with pad_trials"):
        iaf.variable_trials_model(torch.zeros(3, 4))
