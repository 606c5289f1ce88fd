"""The Hodgkin-Huxley simulator: the fused scheme against the reference, spikes, statistics, the model.

Most tests use a 12 ms protocol and the fused scheme uncompiled (``backend="eager"``), which runs
the same block function as the compiled kernel; the compiled kernel itself (about a minute to
compile the first time) is checked in the ``slow`` test at the end.
"""

import math

import numpy as np
import pytest
import scipy.stats
import torch

import pyro_lfi as lfi
from pyro_lfi.benchmark import hodgkin_huxley as bench
from pyro_lfi.models import hodgkin_huxley as hh
from pyro_lfi.models import hodgkin_huxley_model

SHORT = hh.Protocol(duration=12.0, t_on=1.0, t_off=11.0)
TINY = hh.Protocol(duration=3.0, t_on=1.0, t_off=2.0)
TYPICAL = [50.0, 5.0, 0.1, 0.07, 600.0, -60.0, 0.1, -70.0]
SETS = torch.tensor([
    TYPICAL,
    [4.0, 1.5, 0.1, 0.07, 600.0, -60.0, 0.1, -70.0],  # few channels
    [80.0, 15.0, 0.6, 0.6, 3000.0, -40.0, 0.15, -35.0],  # the prior's upper corner
    [0.5, 1e-4, 1e-4, 1e-4, 50.0, -90.0, 1e-4, -100.0],  # its lower corner: tiny conductances
    [30.0, 2.0, 0.02, 0.3, 200.0, -75.0, 0.05, -60.0],
], dtype=torch.float64)


def _noise(n, protocol=SHORT, seed=0):
    return torch.randn(n, protocol.num_steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def reference():
    """Reference float64 traces of SETS on the short protocol."""
    noise = _noise(len(SETS))
    return noise, hh.simulate_reference(SETS, noise, protocol=SHORT)


def test_fused_scheme_equals_the_reference_in_float64(reference):
    noise, truth = reference
    fused = hh.simulate(SETS, noise, protocol=SHORT, backend="eager", steps_per_call=7)
    assert fused.shape == truth.shape == (len(SETS), SHORT.num_samples) and fused.dtype == torch.float64
    assert torch.equal(fused[:, 0], torch.full((len(SETS),), SHORT.v0, dtype=torch.float64))
    assert (fused - truth).abs().max() < 1e-6


def test_fused_float32_is_within_float_tolerance_of_the_reference(reference):
    noise, truth = reference
    fused = hh.simulate(SETS.float(), noise.float(), protocol=SHORT, backend="eager")
    assert fused.dtype == torch.float32
    # float32 rounding alone moves spikes by a fraction of a step: a fraction of a mV on the upstroke
    assert (fused.double() - truth).abs().max() < 0.5
    stats, true_stats = hh.summary_statistics(fused, SHORT), hh.summary_statistics(truth, SHORT)
    assert torch.equal(stats[:, 0], true_stats[:, 0].float())
    torch.testing.assert_close(stats.double(), true_stats, rtol=1e-3, atol=1e-3)


def test_spikes_with_current_and_sodium_only():
    params = torch.tensor([TYPICAL, TYPICAL, TYPICAL])
    params[1, 0] = 0.0  # no sodium
    params[2, 0] = 0.05  # almost none
    with_current = hh.simulate(params, output="summary", protocol=SHORT, backend="eager")
    assert with_current[0, 0] >= 1 and with_current[1, 0] == 0 and with_current[2, 0] == 0
    silent = hh.Protocol(duration=12.0, t_on=1.0, t_off=11.0, amplitude=0.0)
    no_current = hh.simulate(params, output="summary", protocol=silent, backend="eager")
    assert (no_current[:, 0] == 0).all()
    # before the stimulus the neuron rests near its leak reversal, quietly
    assert (with_current[:, 1] - TYPICAL[-1]).abs().max() < 5 and (with_current[:, 2] < 1).all()


def test_summary_statistics_shape_and_finite_for_prior_draws():
    torch.manual_seed(0)
    params = hh.hodgkin_huxley_prior().sample((4, 8))
    traces = hh.simulate(params, protocol=SHORT, backend="eager")
    assert traces.shape == (4, 8, SHORT.num_samples)
    stats = hh.summary_statistics(traces, SHORT)
    assert stats.shape == (4, 8, len(hh.SUMMARY_NAMES)) == (4, 8, 7)
    assert stats.isfinite().all(-1).double().mean() >= 0.9
    assert (stats[..., 0] == stats[..., 0].round()).all() and (stats[..., 0] >= 0).all()
    assert stats[..., 0].max() > 0  # some draws spike
    # the summaries accumulated while simulating equal those of the traces
    torch.manual_seed(1)
    noise = torch.randn(4, 8, TINY.num_steps)
    direct = hh.simulate(params, noise, output="summary", protocol=TINY, backend="eager", chunk_size=20)
    of_traces = hh.summary_statistics(hh.simulate(params, noise, protocol=TINY, backend="eager"), TINY)
    torch.testing.assert_close(direct, of_traces, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_summary_statistics_against_numpy():
    protocol = hh.Protocol(duration=2.0, dt=0.01, t_on=0.5, t_off=1.5)
    t = torch.arange(protocol.num_samples) * protocol.dt
    gen = torch.Generator().manual_seed(0)
    v = -65.0 + torch.randn(3, protocol.num_samples, generator=gen, dtype=torch.float64).cumsum(-1)
    v[0] = -70.0 + 0.01 * torch.randn(protocol.num_samples, generator=gen, dtype=torch.float64)
    # row 2: three spikes during the stimulus (at 0.6, 0.9, 1.2 ms) and one before and one after it
    v[2] = -60.0
    for start in (0.2, 0.6, 0.9, 1.2, 1.6):
        v[2, (t >= start) & (t < start + 0.1)] = 20.0
    stats = hh.summary_statistics(v, protocol)
    x = v.numpy()
    stim = x[:, 51:150]
    expected = np.stack([x[:, :50].mean(1), x[:, 45:50].std(1), stim.mean(1), stim.var(1),
                         scipy.stats.skew(stim, 1), scipy.stats.kurtosis(stim, 1, fisher=False)], 1)
    np.testing.assert_allclose(stats[:, 1:].numpy(), expected, rtol=1e-9, atol=1e-9)
    assert stats[2, 0] == 3
    # a constant stimulus window has no skewness or kurtosis
    flat = hh.summary_statistics(torch.full((protocol.num_samples,), -70.0), protocol)
    assert flat[4] == 0 and flat[5].isnan() and flat[6].isnan()
    with pytest.raises(ValueError, match="samples"):
        hh.summary_statistics(v[:, :-1], protocol)


def test_subsampled_traces_and_argument_checks():
    params = SETS[:2].float()
    noise = _noise(2).float()
    full = hh.simulate(params, noise, protocol=SHORT, backend="eager", steps_per_call=7)
    every = hh.simulate(params, noise, output="trace", subsample=20, protocol=SHORT, backend="eager", steps_per_call=7)
    assert every.shape == (2, math.ceil(SHORT.num_samples / 20))
    assert torch.equal(every, full[:, ::20])
    with pytest.raises(ValueError, match="noise"):
        hh.simulate(params, noise[:, :-1], protocol=SHORT)
    with pytest.raises(ValueError, match=r"\[\.\.\., 8\]"):
        hh.simulate(params[:, :7], protocol=SHORT)
    with pytest.raises(ValueError, match="output"):
        hh.simulate(params, output="spikes")
    assert hh.simulate(torch.empty(0, 8), output="summary").shape == (0, 7)


def test_prior():
    assert tuple(hh.PRIOR_BOUNDS) == hh.PARAMETER_NAMES and len(hh.PARAMETER_UNITS) == 8
    prior = hh.hodgkin_huxley_prior()
    draws = prior.sample((1000,))
    assert draws.shape == (1000, 8)
    assert (draws >= torch.tensor(hh.PRIOR_LOW)).all() and (draws <= torch.tensor(hh.PRIOR_HIGH)).all()
    assert hh.PRIOR_BOUNDS["V_T"] == (-90.0, -40.0) and hh.PRIOR_BOUNDS["E_leak"] == (-100.0, -35.0)


def test_pyro_model_with_simulate():
    sims = lfi.simulate(hodgkin_huxley_model, 20, seed=0, backend="eager", protocol=TINY)
    assert sims["theta"].shape == (20, 8) and sims["x"].shape == (20, 7)
    assert sims.valid.double().mean() >= 0.9
    traces = lfi.simulate(hodgkin_huxley_model, 4, seed=1, output="trace", subsample=10, backend="eager",
                          protocol=TINY)
    assert traces["x"].shape == (4, math.ceil(TINY.num_samples / 10))


def test_benchmark_functions_run_on_a_tiny_configuration():
    assert bench.measure_compile("eager", protocol=TINY) > 0
    rates = [bench.measure("eager", 3, protocol=TINY), bench.measure("fused", 3, backend="eager", protocol=TINY)]
    assert all(r["sims_per_min"] > 0 and r["batch"] == 3 for r in rates)
    agreement = bench.check_agreement(2, backend="eager", protocol=TINY)
    names = ["fused, float32", "eager, float32", "fused scheme, float64 (uncompiled)"]
    assert [r["traces"] for r in agreement] == names
    assert agreement[2]["max_abs_mV"] < 1e-6 and agreement[0]["within_1mV"] == 1.0
    report = bench.format_report(rates, 1.0, agreement)
    assert "| eager | 3 |" in report and "| fused | 3 |" in report and "fused, float32" in report


@pytest.mark.slow
def test_compiled_kernel_matches_the_uncompiled_blocks():
    torch.manual_seed(0)
    params = torch.cat([SETS.float(), hh.hodgkin_huxley_prior().sample((27,))])
    noise = torch.randn(len(params), SHORT.num_steps)
    eager = hh.simulate(params, noise, protocol=SHORT, backend="eager")
    compiled = hh.simulate(params, noise, protocol=SHORT, backend="inductor", chunk_size=24)  # 2 chunk sizes
    assert (compiled - eager).abs().amax(-1).median() < 0.01 and (compiled - eager).abs().max() < 1.0
    one = hh.simulate(params[:1], noise[:1], protocol=SHORT, backend="inductor")  # a batch of 1
    assert (one - eager[:1]).abs().max() < 0.1
    summary = hh.simulate(params, noise, output="summary", protocol=SHORT, backend="inductor")
    torch.testing.assert_close(summary, hh.summary_statistics(compiled, SHORT), rtol=1e-4, atol=1e-4)
