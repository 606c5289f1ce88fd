"""The pyloric network: the integrators against the reference implementation and each other,
the features, the prior and the Pyro model.

The fast tests run the fused scheme uncompiled (``backend="eager"``, the same block function as
the compiled kernel) on protocols of 7.5-20 ms. Starting at V = +10 mV (``KICK``) makes every
neuron cross both feature thresholds within 6 ms (from the reference's initial state, with every
gate at 0, the network first spikes after 100-300 ms). The compiled kernel (a minute or two to
compile the first time), the published bursting rhythm (11 s) and a campaign under the prior
are checked in the ``slow`` tests at the end.
"""

import numpy as np
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.models import pyloric as pl
from pyro_lfi.models import pyloric_model
from pyro_lfi.models.pyloric import fused

BURSTING = list(pl.BURSTING_CIRCUIT)
#: Its features there (11 s at dt = 0.025 ms, 1 s burn-in, noise ``RandomState(5340)``).
PUBLISHED = [982.763889, 95.145, 196.325, 90.0375, 0.0968136915, 0.199768227, 0.0916166141, 0.432694074,
             0.665015051, 425.236111, 228.316667, 332.486111, 23.95, 0.338317387, 0.0243700448, 2.5, 9.325, 2.5]
SHORT = pl.Protocol(duration=20.0, burn_in=0.0)
KICK = pl.Protocol(duration=7.5, burn_in=0.0, v0=10.0)


def _sets(num_draws=3, seed=0):
    """BURSTING, the prior's lower and upper corners and prior draws, float64."""
    torch.manual_seed(seed)
    corners = torch.tensor([BURSTING, pl.PRIOR_LOW, pl.PRIOR_HIGH], dtype=torch.float64)
    return torch.cat([corners, pl.pyloric_prior(torch.float64).sample((num_draws,))])


def _noise(n, protocol, seed=0, dtype=torch.float64):
    return torch.randn(n, 3, protocol.num_steps, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(scope="module")
def kicked():
    """Parameter sets, noise and float64 reference traces on the KICK protocol."""
    params = _sets()
    noise = _noise(len(params), KICK)
    return params, noise, pl.simulate_reference(params, noise, protocol=KICK)


def test_reference_reproduces_the_published_implementation():
    # V of the 3 neurons after 10 and 20 ms by the reference's Cython simulator (``sim_time``) for
    # BURSTING and the noise numpy.random.RandomState(0).normal(scale=0.001, size=(3, 801))
    published = {400: [-50.69282117731049, -50.18896563344883, -50.331107589385],
                 800: [-52.93709846761297, -52.901172400622414, -51.08765848442039]}
    noise = torch.from_numpy(np.random.RandomState(0).normal(size=(3, 801))[None, :, 1:])
    v = pl.simulate_reference(torch.tensor([BURSTING], dtype=torch.float64), noise, protocol=SHORT)[0]
    for sample, values in published.items():
        torch.testing.assert_close(v[:, sample], torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-9)


def test_fused_scheme_equals_the_reference_in_float64(kicked):
    params, noise, truth = kicked
    traces = pl.simulate(params, noise, output="trace", protocol=KICK, backend="eager", steps_per_call=7)
    assert traces.shape == truth.shape == (len(params), 3, KICK.num_samples) and traces.dtype == torch.float64
    assert torch.equal(traces[..., 0], torch.full((len(params), 3), 10.0, dtype=torch.float64))
    assert (traces - truth).abs().max() < 1e-8
    assert truth.isfinite().all() and truth.abs().max() < 100


def test_fused_float32_has_the_reference_spike_times(kicked):
    params, noise, truth = kicked
    traces = pl.simulate(params.float(), noise.float(), output="trace", protocol=KICK, backend="eager")
    assert traces.dtype == torch.float32
    assert (traces.double() - truth).abs().max() < 0.5  # float32 rounding moves an upstroke by a fraction of a step
    ours, theirs = pl.trace_events(traces.double()), pl.trace_events(truth)
    assert len(ours[0]) == len(theirs[0]) > 3 * len(params)  # every neuron crosses -10 and -30 mV, down and up
    assert all(torch.equal(a, b) for a, b in zip(ours[1:4], theirs[1:4]))
    assert (ours[0] - theirs[0]).abs().max() <= 2  # crossing samples within two steps


# -- features -------------------------------------------------------------------------------------

RHYTHM = pl.Protocol(duration=4000.0, burn_in=500.0)


def _rhythm(silent_py=False, tonic_py=False):
    """Traces [3, samples] at -60 mV with 1 ms pulses to +20 mV: AB/PD bursts of 6 spikes every
    20 ms starting at 700, 1700, 2700 and 3700 ms, LP bursts of 5 spikes every 40 ms 300 ms later
    (on a -20 mV plateau for their first 100 ms), PY bursts of 8 spikes every 15 ms 600 ms later."""
    v = torch.full((3, RHYTHM.num_samples), -60.0, dtype=torch.float64)
    step = round(1 / RHYTHM.dt)  # samples per ms

    def burst(neuron, start, count, interval):
        for i in range(count):
            v[neuron, (start + i * interval) * step : (start + i * interval + 1) * step] = 20.0

    for start in (700, 1700, 2700, 3700):
        burst(0, start, 6, 20)
        if start < 3700:
            v[1, (start + 300) * step : (start + 400) * step] = -20.0
            burst(1, start + 300, 5, 40)
            burst(2, start + 600, 8, 15)
    if silent_py or tonic_py:
        v[2] = -60.0
    if tonic_py:
        for start in range(600, 4000, 200):  # single spikes: bursts shorter than 40 ms do not count
            burst(2, start, 1, 1)
    return v


def test_features_of_a_constructed_rhythm():
    features = pl.summary_features(torch.stack([_rhythm(), _rhythm(silent_py=True), _rhythm(tonic_py=True)]),
                                   RHYTHM)
    assert features.shape == (3, len(pl.FEATURE_NAMES)) == (3, 18)
    expected = [1000.0, 100.0, 160.0, 105.0, 0.1, 0.16, 0.105, 0.3, 0.6, 300.0, 300.0, 200.0, 140.0, 0.2, 0.14,
                2.5, 100.0, 2.5]  # spikes 1 ms long: no plateau, reported as 2.5 ms; LP's 100 ms plateau
    torch.testing.assert_close(features[0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)
    for row in features[1:]:  # PY does not burst: its features are NaN, and so are the phases
        torch.testing.assert_close(row[[0, 1, 2, 4, 5, 15, 16]], features[0, [0, 1, 2, 4, 5, 15, 16]])
        assert row[[3, 6, 17]].isnan().all() and row[7:15].isnan().all()
    # the burn-in hides what happens before it; a neuron that only fires before it is silent
    late = pl.Protocol(duration=4000.0, burn_in=3750.0)
    assert pl.summary_features(_rhythm(), late).isnan().all()
    with pytest.raises(ValueError, match="shape"):
        pl.summary_features(_rhythm()[:, :-1], RHYTHM)


def test_features_from_events_handle_excursions_across_the_window():
    # AB/PD: a spike straddling the start of the window (sample 4000), its peak at sample 4002, and
    # 200 ms later a depolarization above -10 mV that lasts past the end: a burst from its start
    # to the end of the window (the spike alone is a burst shorter than 40 ms, dropped)
    protocol = pl.Protocol(duration=1000.0, burn_in=100.0)
    zeros = torch.zeros(3, dtype=torch.long)
    events = (torch.tensor([3990, 4040, 12000]), zeros, zeros, zeros, torch.tensor([0, 38, 0]))
    features = pl.features_from_events(events, 1, protocol)[0]
    assert features[0].isnan() and features[4].isnan()  # one burst: no period, no duty cycle
    assert features[1] == pytest.approx((protocol.num_samples - 12000) * protocol.dt)
    assert features[15] == pl.features.SHORT_PLATEAU  # no excursion above -30 mV recorded
    # the same spike alone, and the depolarization starting 100 ms after it: one burst from its peak
    events = (torch.tensor([3990, 4040, 8000]), zeros, zeros, zeros, torch.tensor([0, 38, 0]))
    features = pl.features_from_events(events, 1, protocol)[0]
    assert features[1] == pytest.approx((protocol.num_samples - 4002) * protocol.dt)


# -- the prior and the model ----------------------------------------------------------------------


def test_prior():
    assert len(pl.PARAMETER_NAMES) == len(pl.PARAMETER_UNITS) == len(pl.PRIOR_BOUNDS) == 31
    assert pl.PARAMETER_NAMES[0] == "AB/PD Na" and pl.PARAMETER_NAMES[24] == "AB-LP synapse"
    assert pl.PRIOR_BOUNDS["AB/PD Kd"] == (25.0, 150.0) and pl.PRIOR_BOUNDS["PY Na"] == (0.0, 600.0)
    assert pl.PRIOR_BOUNDS["AB-LP synapse"] == (0.01, 10_000.0) and pl.PRIOR_BOUNDS["PY-LP synapse"] == (0.01, 1000.0)
    prior = pl.pyloric_prior()
    draws = prior.sample((4000,))
    low, high = torch.tensor(pl.PRIOR_LOW), torch.tensor(pl.PRIOR_HIGH)
    assert draws.shape == (4000, 31) and prior.event_shape == (31,)
    assert ((draws >= low) & (draws <= high)).all() and prior.support.check(draws).all()
    # conductances uniform (mean mid-range), synapses log-uniform (log mean mid-range in log space)
    u = (draws[:, :24] - low[:24]) / (high[:24] - low[:24])
    w = (draws[:, 24:].log() - low[24:].log()) / (high[24:].log() - low[24:].log())
    assert (u.mean(0) - 0.5).abs().max() < 0.03 and (w.mean(0) - 0.5).abs().max() < 0.03
    assert (w.var(0) - 1 / 12).abs().max() < 0.01
    # the density: uniform in the conductances, 1 / g in each synapse
    expected = -(high[:24] - low[:24]).log().sum() - (high[24:].log() - low[24:].log()).log().sum()
    torch.testing.assert_close(prior.log_prob(draws[:5]), expected - draws[:5, 24:].log().sum(-1))
    # the support is the box, so that the unconstrained map reaches exactly it
    z = 10 * torch.randn(100, 31)
    assert prior.support.check(torch.distributions.biject_to(prior.support)(z)).all()
    assert prior.expand((2, 3)).sample().shape == (2, 3, 31)


def test_pyro_model_with_simulate():
    tiny = pl.Protocol(duration=2.0, burn_in=0.0)
    with pytest.warns(UserWarning, match="all 6 simulations are invalid"):
        sims = lfi.simulate(pyloric_model, 6, seed=0, backend="eager", protocol=tiny)
    assert sims["theta"].shape == (6, 31) and sims["x"].shape == (6, 18)
    assert sims.num_valid == 0 and sims["x"].isnan().all()  # nothing bursts in 2 ms: every row is invalid
    traces = lfi.simulate(pyloric_model, 3, seed=1, output="trace", subsample=10, backend="eager", protocol=tiny)
    assert traces["x"].shape == (3, 3 * 9) and traces.num_valid == 3
    assert torch.equal(traces["x"][:, 0], torch.full((3,), -50.0))  # AB/PD at V(0), then LP and PY
    with pytest.raises(ValueError, match="output"):
        pl.simulate(traces["theta"], output="spikes", protocol=tiny)
    with pytest.raises(ValueError, match=r"\[\.\.\., 31\]"):
        pl.simulate(traces["theta"][:, :30], protocol=tiny)
    with pytest.raises(ValueError, match="noise"):
        pl.simulate(traces["theta"], torch.zeros(3, 3, 5), protocol=tiny)
    assert pl.simulate(torch.empty(0, 31), protocol=tiny).shape == (0, 18)
    # float64 runs eagerly unless asked to compile (gcc 12 fails on that kernel, after minutes)
    assert not fused._compiles("auto", (10, 0.025, 283.0, 0.001, False, torch.float64))
    assert fused._compiles("inductor", (10, 0.025, 283.0, 0.001, False, torch.float64))


# -- the compiled kernel ----------------------------------------------------------------------------


def _streamed_events(monkeypatch, params, noise, protocol, chunk_size=64, **kwargs):
    """The crossings that ``simulate`` hands to the features, chunk by chunk, without the rows
    that pad a compiled chunk, sorted by row, neuron, kind, sample."""
    captured = []

    def capture(events, num_rows, protocol):
        captured.append(events)
        return torch.zeros(num_rows, 18, dtype=torch.float64)

    monkeypatch.setattr(fused, "features_from_events", capture)
    pl.simulate(params, noise, protocol=protocol, chunk_size=chunk_size, **kwargs)
    monkeypatch.undo()
    kept = []
    for i, events in enumerate(captured):
        real = events[1] < min(chunk_size, len(params) - i * chunk_size)
        kept.append([e[real] for e in (events[0], events[1] + i * chunk_size, *events[2:])])
    streamed = [torch.cat(fields) for fields in zip(*kept)]
    order = np.lexsort([e.numpy() for e in (streamed[0], streamed[3], streamed[2], streamed[1])])
    return [e[order] for e in streamed]


def test_fused_features_see_the_crossings_of_the_traces(kicked, monkeypatch):
    params, noise, _ = kicked
    streamed = _streamed_events(monkeypatch, params, noise, KICK, 4, backend="eager", steps_per_call=6)
    traces = pl.simulate(params, noise, output="trace", protocol=KICK, backend="eager", steps_per_call=6)
    for got, want in zip(streamed, pl.trace_events(traces)):
        assert torch.equal(got, want)


@pytest.mark.slow
def test_compiled_kernel_matches_the_uncompiled_blocks(kicked, monkeypatch):
    # the compiled kernel (for features: the one the other slow tests use) against the same blocks
    # run eagerly, float32: the same crossings, up to a step where float rounding differs
    params, noise, _ = kicked
    params, noise = params.float(), noise.float()
    eager = _streamed_events(monkeypatch, params, noise, KICK, backend="eager")
    for chunk_size in (4, 64):  # chunks of 4 and 2 rows, and one of 6 (each padded to 16)
        compiled = _streamed_events(monkeypatch, params, noise, KICK, chunk_size, backend="inductor")
        assert len(compiled[0]) == len(eager[0]) and all(torch.equal(a, b) for a, b in zip(compiled[1:4], eager[1:4]))
        assert (compiled[0] - eager[0]).abs().max() <= 1 and (compiled[4] - eager[4]).abs().max() <= 1
    one = _streamed_events(monkeypatch, params[:1], noise[:1], KICK, backend="inductor")  # a batch of 1
    first = eager[1] == 0
    assert len(one[0]) == int(first.sum()) and (one[0] - eager[0][first]).abs().max() <= 1


@pytest.mark.slow
def test_the_published_bursting_circuit_keeps_its_rhythm():
    # the reference's test circuit with its noise draws: 11 s, features after 1 s. In float32 the
    # spike times follow the float64 ones for about 2.5 s, then drift by whole spikes (the rhythm
    # is chaotic at the spike level); the rhythm's features stay within a few percent
    protocol = pl.Protocol(duration=11_000.0 - 0.025)  # 440,000 samples, as the reference's
    noise = torch.from_numpy(np.random.RandomState(5340).normal(size=(3, 440_000))[None, :, 1:]).float()
    features = pl.simulate(torch.tensor([BURSTING]), noise, protocol=protocol)[0].double()
    published = torch.tensor(PUBLISHED, dtype=torch.float64)
    assert features.isfinite().all()
    assert (features[0] / published[0] - 1).abs() < 0.01  # cycle period 982.8 ms
    assert ((features[1:4] / published[1:4] - 1).abs() < 0.1).all()  # burst durations
    assert ((features[[7, 8, 13, 14]] - published[[7, 8, 13, 14]]).abs() < 0.01).all()  # phases, in cycles
    assert ((features[9:13] - published[9:13]).abs() < 5).all()  # delays and gaps, ms


@pytest.mark.slow
def test_a_campaign_under_the_prior():
    protocol = pl.Protocol(duration=4000.0, burn_in=1000.0)
    sims = lfi.simulate(pyloric_model, 256, seed=0, protocol=protocol)
    valid = sims.num_valid / len(sims)
    print(f"valid fraction under the prior, 4 s with 1 s burn-in: {valid:.3f}")
    assert 0 < sims.num_valid < len(sims) // 4  # few prior draws give a triphasic rhythm
    x = sims["x"][sims.valid]
    assert (x[:, 0] > 0).all() and ((x[:, 4:7] > 0) & (x[:, 4:7] < 1)).all()
    bursting = sims["x"][:, 1].isfinite()  # AB/PD bursts, whatever the others do
    assert bursting.sum() > sims.num_valid
