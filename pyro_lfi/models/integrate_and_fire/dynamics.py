"""The protocol and the Euler-Maruyama integrator of the exponential integrate-and-fire neuron."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DEFAULT_PROTOCOL", "Protocol", "lif_firing_rate", "simulate"]

_CHUNK = 16_384  # rows integrated together: bounds the [rows, steps] spike raster's memory


@dataclass(frozen=True)
class Protocol:
    """A recording: ``duration`` ms at step ``dt`` (ms), a current step of ``amplitude``
    (:math:`R I` in mV) from ``t_on`` to ``t_off`` ms, reset to ``v_reset`` mV after a spike
    for ``t_ref`` ms, spike cutoff ``v_cut`` mV (with :math:`\\Delta_T = 0`, the threshold is
    :math:`V_T` itself)."""

    duration: float = 300.0
    dt: float = 0.1
    t_on: float = 50.0
    t_off: float = 300.0
    amplitude: float = 25.0
    v_reset: float = -70.0
    v_cut: float = 0.0
    t_ref: float = 2.0

    def __post_init__(self) -> None:
        if not (self.dt > 0 and 0 <= self.t_on < self.t_off <= self.duration and self.t_ref >= 0):
            raise ValueError(f"Protocol needs dt > 0, 0 <= t_on < t_off <= duration and t_ref >= 0, got {self}")

    @property
    def num_steps(self) -> int:
        return round(self.duration / self.dt)

    @property
    def times(self) -> Tensor:
        """``[num_steps]``: the time (ms) at the end of each step, when its spike is recorded."""
        return (torch.arange(self.num_steps) + 1) * self.dt

    def drive(self) -> Tensor:
        """``[num_steps]``: the step current :math:`R I(t)` (mV) during each step."""
        start = torch.arange(self.num_steps) * self.dt
        return torch.where((start >= self.t_on) & (start < self.t_off), self.amplitude, 0.0)


DEFAULT_PROTOCOL = Protocol()


def _checked(params: Tensor, noise: Tensor | None, drive: Tensor | None, protocol: Protocol) -> Tensor:
    if params.dim() < 1 or params.shape[-1] != 5:
        raise ValueError(
            f"integrate_and_fire.simulate: params must be [..., 5] (tau, e_leak, delta_t, v_t, sigma), "
            f"got shape {tuple(params.shape)}"
        )
    steps = protocol.num_steps
    if noise is not None and noise.shape != (*params.shape[:-1], steps):
        raise ValueError(f"noise must be [..., num_steps] = {(*params.shape[:-1], steps)}, got {tuple(noise.shape)}")
    if drive is not None and drive.shape[-1] != steps:
        raise ValueError(f"drive must have num_steps = {steps} entries in its last dim, got {tuple(drive.shape)}")
    if (params[..., 0] <= 0).any() or (params[..., 2] < 0).any() or (params[..., 4] < 0).any():
        raise ValueError("integrate_and_fire.simulate needs tau > 0, delta_t >= 0 and sigma >= 0")
    return params.reshape(-1, 5)


def _integrate(params: Tensor, noise: Tensor | None, drive: Tensor, protocol: Protocol) -> Tensor:
    """Euler-Maruyama for rows ``params [n, 5]``: the spike raster ``[n, num_steps]``."""
    tau, e_leak, delta_t, v_t, sigma = params.unbind(-1)
    dt, n = protocol.dt, params.shape[0]
    rate, kick = dt / tau, sigma * torch.sqrt(2 * dt / tau)
    threshold = torch.where(delta_t > 0, torch.full_like(v_t, protocol.v_cut), v_t)
    slope = torch.where(delta_t > 0, delta_t, torch.ones_like(delta_t))
    refractory_steps = round(protocol.t_ref / dt)
    v, hold = e_leak.clone(), torch.zeros(n, dtype=torch.long, device=params.device)
    spikes = torch.zeros(n, protocol.num_steps, dtype=torch.bool, device=params.device)
    drive = drive.expand(n, -1) if drive.dim() == 2 else drive.expand(n, protocol.num_steps)
    for k in range(protocol.num_steps):
        xi = torch.randn(n, dtype=params.dtype, device=params.device) if noise is None else noise[:, k]
        spike_current = delta_t * torch.exp(((v - v_t) / slope).clamp(max=30.0))
        stepped = v + rate * (e_leak - v + spike_current + drive[:, k]) + kick * xi
        v = torch.where(hold > 0, v, stepped)
        hold = (hold - 1).clamp(min=0)
        fired = v >= threshold
        spikes[:, k] = fired
        v = torch.where(fired, torch.full_like(v, protocol.v_reset), v)
        hold = torch.where(fired, refractory_steps, hold)
    return spikes


def simulate(params: Tensor, noise: Tensor | None = None, *, protocol: Protocol = DEFAULT_PROTOCOL,
             drive: Tensor | None = None) -> Tensor:
    r"""The spike rasters ``[..., num_steps]`` (bool) of parameter sets ``params [..., 5]``
    (:data:`PARAMETER_NAMES` order), one row of the batch at a time in chunks, every row advanced
    together by Euler-Maruyama from :math:`V(0) = E_L`:

    .. math:: V_{k+1} = V_k + \frac{dt}{\tau}\Big(E_L - V_k + \Delta_T e^{(V_k - V_T)/\Delta_T}
        + \mu_k\Big) + \sigma \sqrt{2\, dt / \tau}\, \xi_k,

    a spike when :math:`V_{k+1} \ge V_{cut}` (:math:`V_T` if :math:`\Delta_T = 0`), then V held
    at :math:`V_{reset}` for :math:`t_{ref}`. The exponent is clipped at 30 (the step then jumps
    past the cutoff anyway).

    :param noise: the :math:`\xi_k`, ``[..., num_steps]``; default fresh draws from torch's RNG.
    :param drive: :math:`\mu_k = R I_k` in mV, ``[num_steps]`` or ``[..., num_steps]`` (e.g. a
        frozen noisy current); default the protocol's step.
    """
    flat = _checked(params, noise, drive, protocol)
    drive = protocol.drive().to(flat) if drive is None else drive.to(flat)
    flat_noise = None if noise is None else noise.reshape(-1, protocol.num_steps).to(flat)
    flat_drive = drive if drive.dim() == 1 else drive.expand(*params.shape[:-1], -1).reshape(-1, protocol.num_steps)
    chunks = []
    for start in range(0, flat.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        chunks.append(_integrate(flat[rows], None if flat_noise is None else flat_noise[rows],
                                 flat_drive if flat_drive.dim() == 1 else flat_drive[rows], protocol))
    raster = torch.cat(chunks) if chunks else torch.zeros(0, protocol.num_steps, dtype=torch.bool)
    return raster.reshape(*params.shape[:-1], protocol.num_steps)


def lif_firing_rate(tau: float, e_leak: float, v_t: float, drive: float,
                    protocol: Protocol = DEFAULT_PROTOCOL) -> float:
    r"""The exact firing rate (Hz) of the leaky limit (:math:`\Delta_T = 0`, :math:`\sigma = 0`)
    under a constant drive :math:`\mu = R I`: from the reset, :math:`V(t) = V_\infty +
    (V_{reset} - V_\infty) e^{-t/\tau}` with :math:`V_\infty = E_L + \mu` reaches :math:`V_T`
    after :math:`\tau \ln\frac{V_\infty - V_{reset}}{V_\infty - V_T}`, so the period is
    :math:`t_{ref}` plus that when :math:`V_\infty > V_T` (and the rate 0 otherwise)."""
    v_inf = e_leak + drive
    if v_inf <= v_t:
        return 0.0
    period = protocol.t_ref + tau * math.log((v_inf - protocol.v_reset) / (v_inf - v_t))
    return 1000.0 / period
