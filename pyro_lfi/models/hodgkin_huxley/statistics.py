"""The 7 summary statistics of a voltage trace, also computed in streaming windows."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .protocol import DEFAULT_PROTOCOL, SUMMARY_NAMES, Protocol


class StreamingStatistics:
    """The summary statistics of ``n`` traces fed in consecutive time-major windows.

    The moments of the stimulus window are merged window by window (Pébay 2008, "Formulas for
    robust, one-pass parallel computation of covariances and arbitrary-order statistical
    moments", eqs. 3.1 and 2.4-2.5): each window's central power sums are computed about its own
    mean in the traces' dtype, and merged in float64, so no large power sum ever cancels. One
    implementation serves both :func:`summary_statistics` and :func:`simulate` (which never
    holds whole traces for them).
    """

    def __init__(self, n: int, protocol: Protocol, dtype: torch.dtype):
        self.protocol, self.dtype = protocol, dtype
        self.on, self.off = protocol.on_index, protocol.off_index
        self.std_start = round(0.9 * protocol.t_on / protocol.dt)
        if not 0 < self.std_start < self.on < self.off - 1 < protocol.num_samples - 1:
            raise ValueError(f"protocol {protocol} leaves an empty window for the summary statistics")
        zeros = functools.partial(torch.zeros, n, dtype=torch.float64)
        self.spikes, self.rest, self.std1, self.std2 = zeros(), zeros(), zeros(), zeros()
        self.count = 0  # samples of the stimulus window so far, their mean and central power sums 2..4
        self.mean, self.m2, self.m3, self.m4 = zeros(), zeros(), zeros(), zeros()
        self.above: Tensor | None = None  # whether the previous sample was at or above the spike threshold
        self.next = 0  # index of the next sample

    def update(self, window: Tensor) -> None:
        """Samples ``next .. next + len(window) - 1`` of every trace, ``window [w, n]``."""
        a, b = self.next, self.next + window.shape[0]
        if b == a:
            return
        # spikes: crossings at k, on < k < off, V[k - 1] < threshold <= V[k]
        lo, hi = max(a, self.on), min(b, self.off)
        if lo < hi:
            above = torch.ge(window[lo - a : hi - a], self.protocol.spike_threshold).view(torch.uint8)
            self.spikes += (above[1:] > above[:-1]).sum(0)
            if lo == a > self.on:
                self.spikes += above[0] > self.above
            self.above = above[-1].clone()
        if a < self.on:
            self.rest += window[: min(b, self.on) - a].sum(0, dtype=torch.float64)
            lo = max(a, self.std_start)
            if lo < min(b, self.on):
                rest = window[lo - a : min(b, self.on) - a].double()
                self.std1 += rest.sum(0)
                self.std2 += (rest * rest).sum(0)
        lo, hi = max(a, self.on + 1), min(b, self.off)
        if lo < hi:
            self._merge(window[lo - a : hi - a])
        self.next = b

    def _merge(self, x: Tensor) -> None:
        nb = x.shape[0]
        center = x.mean(0)
        e = x - center
        e2 = e * e
        s1, s2, s3, s4 = (t.sum(0).double() for t in (e, e2, e2 * e, e2 * e2))
        d = s1 / nb  # window mean - center
        m2b = s2 - nb * d * d
        m3b = s3 - 3 * d * s2 + 2 * nb * d**3
        m4b = s4 - 4 * d * s3 + 6 * d * d * s2 - 3 * nb * d**4
        mean_b = center.double() + d
        na = self.count
        if na == 0:
            self.mean, self.m2, self.m3, self.m4 = mean_b, m2b, m3b, m4b
        else:
            n = na + nb
            delta = mean_b - self.mean
            m2, m3 = self.m2, self.m3
            self.m4 = (self.m4 + m4b + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
                       + 6 * delta**2 * (na * na * m2b + nb * nb * m2) / n**2 + 4 * delta * (na * m3b - nb * m3) / n)
            self.m3 = m3 + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * m2) / n
            self.m2 = m2 + m2b + delta**2 * na * nb / n
            self.mean = self.mean + delta * nb / n
        self.count += nb

    def result(self) -> Tensor:
        """``[n, 7]``, in the order of :data:`SUMMARY_NAMES`."""
        if self.next != self.protocol.num_samples:
            raise ValueError(f"traces must have {self.protocol.num_samples} samples (this protocol), got {self.next}")
        num_std = self.on - self.std_start
        std_mean = self.std1 / num_std
        rest_std = (self.std2 / num_std - std_mean * std_mean).clamp(min=0.0).sqrt()
        variance = self.m2 / self.count
        skewness = self.m3 / self.count / variance**1.5  # NaN for a constant trace (0 / 0)
        kurtosis = self.m4 / self.count / (variance * variance)
        stats = [self.spikes, self.rest / self.on, rest_std, self.mean, variance, skewness, kurtosis]
        return torch.stack(stats, -1).to(self.dtype)


def summary_statistics(v: Tensor, protocol: Protocol = DEFAULT_PROTOCOL) -> Tensor:
    """The 7 summary statistics (:data:`SUMMARY_NAMES`) of traces ``v [..., num_samples]``.

    As in sbi's Hodgkin-Huxley tutorial (after Gonçalves et al. 2020), with ``t_k = k dt``:

    0. number of spikes: upward crossings of ``protocol.spike_threshold`` (-10 mV), counted when
       the first sample at or above it has ``t_on < t < t_off`` (sbi counts a spike at its peak
       instead, which differs for a spike that starts before ``t_off`` and peaks after it);
    1. resting potential: mean of V over ``t < t_on``;
    2. its standard deviation over the last tenth of that window (``0.9 t_on <= t < t_on``);
    3. mean, 4. variance, 5. skewness and 6. kurtosis (not excess) of V over ``t_on < t < t_off``
       (population moments).

    A trace that is constant during the stimulus has a NaN skewness and kurtosis.
    """
    v = torch.as_tensor(v)
    if not v.is_floating_point():
        v = v.to(torch.get_default_dtype())
    if v.shape[-1] != protocol.num_samples:
        raise ValueError(f"traces must have {protocol.num_samples} samples (this protocol), got {v.shape[-1]}")
    flat = v.reshape(-1, v.shape[-1])
    stats = StreamingStatistics(flat.shape[0], protocol, v.dtype)
    for start in range(0, flat.shape[1], 1000):
        stats.update(flat[:, start : start + 1000].T)
    return stats.result().reshape(v.shape[:-1] + (len(SUMMARY_NAMES),))
