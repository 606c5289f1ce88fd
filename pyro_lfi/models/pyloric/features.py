"""The 18 features of a pyloric rhythm, read from threshold-crossing events of the 3 neurons.

Each neuron's excursions above -10 mV are its spikes (or spiking plateaus), those above -30 mV
its plateaus. The simulators only record the samples where V crosses these thresholds,
``(sample, row, neuron, kind)``, and for each spike how many samples before its end its peak
was; the features are computed from those events, and agree with the reference's
``PrinzStats`` (which reads the whole Savitzky-Golay-smoothed trace) to a few hundredths of a
millisecond on its rhythms (tests/test_pyloric.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .protocol import DEFAULT_PROTOCOL, Protocol

SPIKE_THRESHOLD = -10.0  # mV
PLATEAU_THRESHOLD = -30.0  # mV
THRESHOLDS = (SPIKE_THRESHOLD, PLATEAU_THRESHOLD)  # kind 0: spikes, kind 1: plateaus
IBI_THRESHOLD = 150.0  # ms: a gap this long between spikes separates two bursts
MIN_BURST = 40.0  # ms: shorter bursts are not bursts
LONG_EXCURSION = 5.0  # ms: a longer excursion above -10 mV counts as spikes at its start and end
MIN_PLATEAU, SHORT_PLATEAU = 5.0, 2.5  # ms: a mean plateau under 5 ms is reported as 2.5 ms
TRIPHASIC_FRACTION = 0.9  # of the AB/PD cycles in which every neuron starts exactly one burst

FEATURE_NAMES = (
    "cycle period",
    "AB/PD burst duration", "LP burst duration", "PY burst duration",
    "AB/PD duty cycle", "LP duty cycle", "PY duty cycle",
    "LP start phase", "PY start phase",
    "AB/PD-LP start delay", "LP-PY start delay",
    "AB/PD-LP gap", "LP-PY gap",
    "AB/PD-LP phase gap", "LP-PY phase gap",
    "AB/PD plateau duration", "LP plateau duration", "PY plateau duration",
)
"""The 18 features, in order: those of Prinz et al. (2004) as the reference's ``PrinzStats``
(``cycle_period``, ``burst_durations``, ``duty_cycles``, ``start_phases``, ``starts_to_starts``,
``ends_to_starts``, ``phase_gaps``: the 15 of Gonçalves et al. 2020) and ``plateau_durations``
(Deistler et al. 2022). Durations, delays and gaps in ms; duty cycles and phases in cycles."""

Events = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]  # sample, row, neuron, kind, lag (int64 each)


def trace_events(v: Tensor) -> Events:
    """The threshold crossings of traces ``v [n, 3, num_samples]``, as the simulators record them
    step by step: a sample where ``V > threshold`` starts to hold or stops holding (or sample 0
    if it holds there). ``lag`` is, at the end of an excursion above the spike threshold, the
    number of samples since its (first) highest sample, and 0 elsewhere."""
    flags = torch.stack([v > threshold for threshold in THRESHOLDS], -2).view(torch.uint8)  # [n, 3, kind, T]
    toggles = torch.diff(flags, dim=-1, prepend=torch.zeros_like(flags[..., :1])) != 0
    row, neuron, kind, sample = toggles.nonzero(as_tuple=True)
    lag = torch.zeros_like(sample)
    ends = (kind == 0) & (flags[row, neuron, kind, sample] == 0)
    for i in ends.nonzero()[:, 0].tolist():  # sorted by row, neuron, kind, sample: i - 1 is the start
        start, stop = sample[i - 1].item(), sample[i].item()
        lag[i] = stop - start - int(v[row[i], neuron[i], start:stop].argmax())
    return sample, row, neuron, kind, lag


def _intervals(samples: np.ndarray, lags: np.ndarray, start: int, stop: int, dt: float) -> tuple[np.ndarray, ...]:
    """Excursions ``[on, off)`` and their peaks from the sorted toggles of one flag, in ms from
    ``start``, clipped to samples ``start .. stop - 1`` (one still open at the end closes at
    ``stop``, its peak taken at its start), and whether each lasts over :data:`LONG_EXCURSION`.
    A short one whose peak precedes ``start`` is dropped: its spike is before the window."""
    on, off = samples[0::2], samples[1::2]
    peak = off - lags[1::2]
    if len(off) < len(on):
        off, peak = np.append(off, stop), np.append(peak, on[-1])
    long = (off - on) * dt > LONG_EXCURSION
    keep = (off > start) & (on < stop) & (long | (peak >= start))
    on, off, peak = (np.clip(x[keep], start, stop) for x in (on, off, peak))
    return (on - start) * dt, (off - start) * dt, (peak - start) * dt, long[keep]


def _spike_times(on: np.ndarray, off: np.ndarray, peak: np.ndarray, long: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """First and last spike time of each excursion above -10 mV: its peak, or for an excursion
    longer than :data:`LONG_EXCURSION` (a depolarized plateau, on which the reference's smoothed
    trace has many local maxima) its start and end."""
    return np.where(long, on, peak), np.where(long, off, peak)


def _bursts(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Burst starts and ends: spikes grouped until a gap of at least :data:`IBI_THRESHOLD`
    between consecutive spike times, kept if longer than :data:`MIN_BURST`."""
    if len(first) == 0:
        return first, last
    split = np.flatnonzero(first[1:] - last[:-1] >= IBI_THRESHOLD)
    starts, ends = first[np.concatenate([[0], split + 1])], last[np.concatenate([split, [len(first) - 1]])]
    keep = ends - starts > MIN_BURST
    return starts[keep], ends[keep]


def _plateau(starts: np.ndarray, last_spike: float, on: np.ndarray, off: np.ndarray) -> float:
    """Mean over bursts of the longest excursion above -30 mV from a burst's start to the next
    one's (the last: to the last spike), counting only excursions that end before that; under
    :data:`MIN_PLATEAU` ms (single spikes) it is :data:`SHORT_PLATEAU`. NaN without bursts."""
    if len(starts) == 0:
        return math.nan
    block_ends = np.concatenate([starts[1:], [last_spike]])
    lengths = off[None, :] - np.maximum(on[None, :], starts[:, None])  # [bursts, excursions]
    inside = (off[None, :] < block_ends[:, None]) & (off[None, :] > starts[:, None])
    longest = np.where(inside, lengths, 0.0).max(1, initial=0.0).mean()
    return float(longest) if longest >= MIN_PLATEAU else SHORT_PLATEAU


def _circuit(bursts: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Cycle period, burst durations and duty cycles, and the 8 phase features (NaN unless
    triphasic: in 90% of the AB/PD cycles every neuron starts exactly one burst)."""
    nan = math.nan
    durations = [float(np.mean(e - s)) if len(s) else nan for s, e in bursts]
    pd_starts = bursts[0][0]
    period = float(np.mean(np.diff(pd_starts))) if len(pd_starts) >= 2 else nan
    phases = [nan] * 8
    if len(pd_starts) >= 2:
        cycles = []
        for begin, end in zip(pd_starts[:-1], pd_starts[1:]):
            inside = [(s >= begin) & (s < end) for s, _ in bursts]
            if all(m.sum() == 1 for m in inside):
                cycles.append([(s[m][0], e[m][0]) for (s, e), m in zip(bursts, inside)])
        if cycles and len(cycles) / (len(pd_starts) - 1) >= TRIPHASIC_FRACTION:
            c = np.asarray(cycles)  # [cycles, neuron, (start, end)]
            delays = [np.mean(c[:, 1, 0] - c[:, 0, 0]), np.mean(c[:, 2, 0] - c[:, 1, 0])]
            gaps = [np.mean(c[:, 1, 0] - c[:, 0, 1]), np.mean(c[:, 2, 0] - c[:, 1, 1])]
            lp_py = [np.mean(c[:, 1, 0] - c[:, 0, 0]) / period, np.mean(c[:, 2, 0] - c[:, 0, 0]) / period]
            phases = [float(x) for x in lp_py + delays + gaps + [gaps[0] / period, gaps[1] / period]]
    return [period] + durations + [d / period for d in durations] + phases


def features_from_events(events: Events, num_rows: int, protocol: Protocol = DEFAULT_PROTOCOL) -> Tensor:
    """``[num_rows, 18]`` features (:data:`FEATURE_NAMES`, float64) from the flag toggles of
    ``num_rows`` simulations, read from sample ``protocol.burn_in_index`` to the last one."""
    sample, row, neuron, kind, lag = (torch.as_tensor(e, dtype=torch.int64) for e in events)
    groups = (row * 3 + neuron) * 2 + kind
    order = torch.argsort(groups * (protocol.num_samples + 1) + sample)
    cuts = np.cumsum(torch.bincount(groups, minlength=num_rows * 6).numpy())[:-1]
    samples, lags = np.split(sample[order].numpy(), cuts), np.split(lag[order].numpy(), cuts)
    window = (protocol.burn_in_index, protocol.num_samples, protocol.dt)
    out = np.full((num_rows, len(FEATURE_NAMES)), math.nan)
    for r in range(num_rows):
        spikes = [_spike_times(*_intervals(samples[6 * r + 2 * j], lags[6 * r + 2 * j], *window)) for j in range(3)]
        plateaus = [_intervals(samples[6 * r + 2 * j + 1], lags[6 * r + 2 * j + 1], *window)[:2] for j in range(3)]
        bursts = [_bursts(*s) for s in spikes]
        plateau = [_plateau(b[0], s[1][-1] if len(s[1]) else math.nan, *p)
                   for b, s, p in zip(bursts, spikes, plateaus)]
        out[r] = _circuit(bursts) + plateau
    return torch.from_numpy(out)


def summary_features(v: Tensor, protocol: Protocol = DEFAULT_PROTOCOL) -> Tensor:
    """The 18 features (:data:`FEATURE_NAMES`) of traces ``v [..., 3, num_samples]`` (NaN where
    undefined, e.g. the phases of a rhythm that is not triphasic, or every feature of a neuron
    that does not burst), in ``v``'s floating dtype."""
    v = torch.as_tensor(v)
    if not v.is_floating_point():
        v = v.to(torch.get_default_dtype())
    if v.shape[-2:] != (3, protocol.num_samples):
        raise ValueError(f"traces must have shape [..., 3, {protocol.num_samples}] (this protocol), "
                         f"got {tuple(v.shape)}")
    flat = v.reshape(-1, 3, protocol.num_samples)
    features = features_from_events(trace_events(flat), flat.shape[0], protocol)
    return features.to(v.dtype).reshape(v.shape[:-2] + (len(FEATURE_NAMES),))
