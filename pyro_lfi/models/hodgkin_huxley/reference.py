"""The textbook integrator: exponential Euler, one torch operation per term, a Python loop over steps."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..batch_inputs import flatten_batch
from .protocol import C_M, DEFAULT_PROTOCOL, E_K, E_NA, PARAMETER_NAMES, U_CLIP, Protocol


def _efun(z: Tensor) -> Tensor:
    """:math:`z / (e^z - 1)`, continuous (= 1) at ``z = 0``."""
    return torch.where(z == 0, torch.ones_like(z), z / torch.expm1(z))


def _rates(v: Tensor, v_t: Tensor, tau_max: Tensor) -> tuple[Tensor, ...]:
    """Pospischil et al. (2008) rates at ``v``: ``a_m, b_m, a_h, b_h, a_n, b_n, p_inf, tau_p``."""
    u = (v - v_t).clamp(-U_CLIP, U_CLIP)
    v = u + v_t
    a_m = 0.32 * _efun(-0.25 * (u - 13.0)) / 0.25
    b_m = 0.28 * _efun(0.2 * (u - 40.0)) / 0.2
    a_h = 0.128 * torch.exp(-(u - 17.0) / 18.0)
    b_h = 4.0 / (1.0 + torch.exp(-0.2 * (u - 40.0)))
    a_n = 0.032 * _efun(-0.2 * (u - 15.0)) / 0.2
    b_n = 0.5 * torch.exp(-(u - 10.0) / 40.0)
    p_inf = 1.0 / (1.0 + torch.exp(-0.1 * (v + 35.0)))
    tau_p = tau_max / (3.3 * torch.exp(0.05 * (v + 35.0)) + torch.exp(-0.05 * (v + 35.0)))
    return a_m, b_m, a_h, b_h, a_n, b_n, p_inf, tau_p


def initial_state(params: Tensor, v0: float) -> Tensor:
    """``[5, n]``: V(0) and the gates ``m, h, n, p`` at their steady states there."""
    v = torch.full(params.shape[:1], v0, dtype=params.dtype)
    a_m, b_m, a_h, b_h, a_n, b_n, p_inf, _ = _rates(v, params[:, 5], params[:, 4])
    return torch.stack([v, a_m / (a_m + b_m), a_h / (a_h + b_h), a_n / (a_n + b_n), p_inf])


def flatten_inputs(params, noise, dtype: torch.dtype | None, num_steps: int
                   ) -> tuple[Tensor, Tensor | None, torch.Size]:
    """``params [..., 8]`` and ``noise [..., num_steps]`` (or ``None``)
    checked and flattened to one batch dim (:func:`~pyro_lfi.models.batch_inputs.flatten_batch`)."""
    return flatten_batch(params, noise, dtype, len(PARAMETER_NAMES), (num_steps,))


@torch.no_grad()
def simulate_reference(params, noise: Tensor | None = None, *, protocol: Protocol = DEFAULT_PROTOCOL,
                       dtype: torch.dtype | None = None) -> Tensor:
    """Membrane potential traces by the straightforward eager implementation.

    The exponential-Euler equations of the module docstring, one torch operation per term, a
    Python loop over the steps for the whole batch at once. It is the baseline that
    :func:`simulate` is checked and timed against; prefer :func:`simulate`.

    :param params: ``[..., 8]`` parameters in the order of :data:`PARAMETER_NAMES`.
    :param noise: ``[..., num_steps]`` standard normal draws :math:`\\xi_k`; drawn from torch's
        global RNG if omitted.
    :param protocol: the recording (:class:`Protocol`).
    :param dtype: computation dtype (default: that of ``params`` if floating, else torch's default).
    :returns: ``[..., num_samples]`` membrane potential in mV, ``V(0)`` first.
    """
    params, noise, batch = flatten_inputs(params, noise, dtype, protocol.num_steps)
    dtype = params.dtype
    if noise is None:
        noise = torch.randn(params.shape[0], protocol.num_steps, dtype=dtype)
    g_na, g_k, g_leak, g_m, tau_max, v_t, sigma, e_leak = params.unbind(-1)
    current = protocol.current(dtype).tolist()
    dt = protocol.dt
    v, m, h, n, p = initial_state(params, protocol.v0)
    trace = torch.empty(protocol.num_samples, params.shape[0], dtype=dtype)
    trace[0] = v
    for k in range(protocol.num_steps):
        g_tot = g_na * m**3 * h + g_k * n**4 + g_leak + g_m * p
        v_inf = (g_na * m**3 * h * E_NA + g_k * n**4 * E_K + g_leak * e_leak + g_m * p * E_K
                 + current[k] + sigma * noise[:, k] / math.sqrt(dt)) / g_tot
        v = v_inf + (v - v_inf) * torch.exp(-dt * g_tot / C_M)
        a_m, b_m, a_h, b_h, a_n, b_n, p_inf, tau_p = _rates(v, v_t, tau_max)
        m = a_m / (a_m + b_m) + (m - a_m / (a_m + b_m)) * torch.exp(-dt * (a_m + b_m))
        h = a_h / (a_h + b_h) + (h - a_h / (a_h + b_h)) * torch.exp(-dt * (a_h + b_h))
        n = a_n / (a_n + b_n) + (n - a_n / (a_n + b_n)) * torch.exp(-dt * (a_n + b_n))
        p = p_inf + (p - p_inf) * torch.exp(-dt / tau_p)
        trace[k + 1] = v
    return trace.T.reshape(batch + (protocol.num_samples,))
