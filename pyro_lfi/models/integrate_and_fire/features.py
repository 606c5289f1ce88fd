"""Features of spike trains during the stimulus: count, first-spike latency, ISI mean and CV."""

from __future__ import annotations

import torch
from torch import Tensor

from .dynamics import DEFAULT_PROTOCOL, Protocol

__all__ = ["FEATURE_NAMES", "observation", "spike_features"]

#: The columns of :func:`spike_features` and of the model's observation, per trial.
FEATURE_NAMES = ("count", "latency", "isi_mean", "isi_cv")


def spike_features(spikes: Tensor, protocol: Protocol = DEFAULT_PROTOCOL) -> Tensor:
    r"""``[..., 4]`` features of spike rasters ``[..., num_steps]`` over the stimulus window
    :math:`[t_{on}, t_{off})`: the spike count :math:`n`, the first spike's latency after
    :math:`t_{on}` (ms; NaN without a spike), the mean inter-spike interval (ms; NaN with fewer
    than 2 spikes) and its coefficient of variation :math:`\mathrm{sd}/\mathrm{mean}` (population
    sd; NaN with fewer than 3 spikes)."""
    if spikes.shape[-1] != protocol.num_steps:
        raise ValueError(f"spike rasters have {spikes.shape[-1]} steps, the protocol {protocol.num_steps}")
    times = protocol.times.to(torch.get_default_dtype())
    inside = spikes.bool() & (times >= protocol.t_on) & (times < protocol.t_off)
    count = inside.sum(-1)
    ordered = torch.where(inside, times, torch.inf).sort(-1).values  # spike times first, then inf
    latency = torch.where(count > 0, ordered[..., 0] - protocol.t_on, torch.nan)
    isi = ordered.diff(dim=-1)
    valid = torch.isfinite(isi)
    num_isi = valid.sum(-1)
    mean = torch.where(valid, isi, 0.0).sum(-1) / num_isi.clamp(min=1)
    sd = (torch.where(valid, isi - mean.unsqueeze(-1), 0.0).square().sum(-1) / num_isi.clamp(min=1)).sqrt()
    mean_isi = torch.where(num_isi >= 1, mean, torch.nan)
    cv = torch.where(num_isi >= 2, sd / mean, torch.nan)
    return torch.stack([count.to(times.dtype), latency, mean_isi, cv], -1)


def observation(features: Tensor, protocol: Protocol = DEFAULT_PROTOCOL, dequantize: bool = True) -> Tensor:
    r"""The model's observation of one trial, finite everywhere: :func:`spike_features` with the
    undefined entries censored (latency and mean ISI at the window length :math:`t_{off} -
    t_{on}`, the CV at 0), and the count dequantized, :math:`n + u` with :math:`u \sim U(0, 1)`
    from torch's RNG (``dequantize=True``), so that a density estimator of the likelihood
    (:class:`~pyro_lfi.NeuralLikelihood`) sees a continuous variable: :math:`n = \lfloor x_0 \rfloor`."""
    window = protocol.t_off - protocol.t_on
    count, latency, mean_isi, cv = features.unbind(-1)
    if dequantize:
        count = count + torch.rand(count.shape, dtype=count.dtype, device=count.device)
    return torch.stack([count, latency.nan_to_num(window), mean_isi.nan_to_num(window), cv.nan_to_num(0.0)], -1)
