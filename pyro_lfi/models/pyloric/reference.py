"""The textbook integrator: exponential Euler, one torch operation per term, a Python loop over steps."""

from __future__ import annotations

import torch
from torch import Tensor

from ..batch_inputs import flatten_batch
from .protocol import (
    C_M,
    CA_MIN,
    CA_OUT,
    CA_REST,
    DEFAULT_PROTOCOL,
    E_H,
    E_K,
    E_LEAK,
    E_NA,
    F_CA,
    KCA_HALF,
    NS,
    NUM_CONDUCTANCES,
    PARAMETER_NAMES,
    Q10_GBAR,
    Q10_TAU_H,
    Q10_TAU_M,
    Q10_TAU_SYN,
    SYN_SLOPE,
    SYN_V_HALF,
    SYNAPSES,
    V_CLIP,
    Protocol,
)

NUM_GATES = 11  # m_Na h_Na m_CaT h_CaT m_CaS h_CaS m_A h_A m_KCa m_Kd m_H


def _sig(v: Tensor, a: float, b: float) -> Tensor:
    """Prinz et al.'s sigmoid :math:`1 / (1 + e^{(V + a) / b})`."""
    return 1.0 / (1.0 + torch.exp((v + a) / b))


def _sig2(v: Tensor, a1: float, b1: float, a2: float, b2: float) -> Tensor:
    """:math:`1 / (e^{(V + a_1) / b_1} + e^{(V + a_2) / b_2})`."""
    return 1.0 / (torch.exp((v + a1) / b1) + torch.exp((v + a2) / b2))


def gate_kinetics(v: Tensor, ca: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Steady states and time constants (ms) of the 11 gates at ``v`` (mV) and ``ca`` (µM), in the
    order of :data:`NUM_GATES`: Prinz et al. (2003), Table 2 (Liu et al. 1998), as ``simulator.pyx``."""
    inf = [_sig(v, 25.5, -5.29), _sig(v, 48.9, 5.18), _sig(v, 27.1, -7.2), _sig(v, 32.1, 5.5),
           _sig(v, 33.0, -8.1), _sig(v, 60.0, 6.2), _sig(v, 27.2, -8.7), _sig(v, 56.9, 4.9),
           ca / (ca + KCA_HALF) * _sig(v, 28.3, -12.6), _sig(v, 12.3, -11.8), _sig(v, 75.0, 5.5)]
    tau = [2.64 - 2.52 * _sig(v, 120.0, -25.0),
           1.34 * _sig(v, 62.9, -10.0) * (1.5 + _sig(v, 34.9, 3.6)),
           43.4 - 42.6 * _sig(v, 68.1, -20.5),
           210.0 - 179.6 * _sig(v, 55.0, -16.9),
           2.8 + 14.0 * _sig2(v, 27.0, 10.0, 70.0, -13.0),
           120.0 + 300.0 * _sig2(v, 55.0, 9.0, 65.0, -16.0),
           23.2 - 20.8 * _sig(v, 32.9, -15.2),
           77.2 - 58.4 * _sig(v, 38.9, -26.5),
           180.6 - 150.2 * _sig(v, 46.0, -22.7),
           14.4 - 12.8 * _sig(v, 28.3, -19.2),
           2.0 / (torch.exp(-14.59 - 0.086 * v) + torch.exp(-1.87 + 0.0701 * v))]
    return inf, tau


def gate_q10s(protocol: Protocol) -> list[float]:
    """The temperature factor of each gate's rate, in the order of :func:`gate_kinetics`."""
    m, h = [protocol.q10(q) for q in Q10_TAU_M], protocol.q10(Q10_TAU_H)
    return [m[0], h, m[1], h, m[2], h, m[3], h, m[4], m[5], m[6]]


def flatten_inputs(params, noise, dtype: torch.dtype | None, num_steps: int
                   ) -> tuple[Tensor, Tensor | None, torch.Size]:
    """``params [..., 31]`` and ``noise [..., 3, num_steps]`` (or ``None``)
    checked and flattened to one batch dim (:func:`~pyro_lfi.models.batch_inputs.flatten_batch`)."""
    return flatten_batch(params, noise, dtype, len(PARAMETER_NAMES), (3, num_steps))


def conductances(params: Tensor, protocol: Protocol) -> tuple[Tensor, Tensor]:
    """``[8, 3, n]`` maximal membrane conductances and ``[7, n]`` synaptic ones, mS/cm², at the
    protocol's temperature."""
    q = protocol.q10(Q10_GBAR)
    gbar = params[:, :NUM_CONDUCTANCES].reshape(-1, 3, 8).permute(2, 1, 0) * q
    return gbar, params[:, NUM_CONDUCTANCES:].T * (NS * q)


def initial_state(n: int, protocol: Protocol, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """V = v0, [Ca] = 0.05 µM, every gate and synapse at 0 (the reference's initial state):
    ``v [3, n]``, ``ca [3, n]``, ``gates [11, 3, n]``."""
    v = torch.full((3, n), protocol.v0, dtype=dtype)
    return v, torch.full((3, n), CA_REST, dtype=dtype), torch.zeros(NUM_GATES, 3, n, dtype=dtype)


def _synaptic(g_syn: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Total synaptic conductance onto each neuron and its :math:`\\sum g s E_{syn}`, ``[3, n]`` each."""
    g, ge = torch.zeros_like(s[:3]), torch.zeros_like(s[:3])
    for j, (_, _, post, e_syn, _) in enumerate(SYNAPSES):
        g[post] = g[post] + g_syn[j] * s[j]
        ge[post] = ge[post] + g_syn[j] * s[j] * e_syn
    return g, ge


@torch.no_grad()
def simulate_reference(params, noise: Tensor | None = None, *, protocol: Protocol = DEFAULT_PROTOCOL,
                       dtype: torch.dtype | None = None) -> Tensor:
    """Membrane potentials of the 3 neurons by the straightforward eager implementation.

    The exponential-Euler equations of the package docstring, one torch operation per term, a
    Python loop over the steps for the whole batch at once; each step reads only the previous
    state. It is the baseline :func:`simulate` is checked and timed against; prefer that.

    :param params: ``[..., 31]`` parameters in the order of :data:`PARAMETER_NAMES`.
    :param noise: ``[..., 3, num_steps]`` standard normal draws :math:`\\xi_{k}`; drawn from
        torch's global RNG if omitted.
    :returns: ``[..., 3, num_samples]`` membrane potentials in mV (AB/PD, LP, PY), ``V(0)`` first.
    """
    params, noise, batch = flatten_inputs(params, noise, dtype, protocol.num_steps)
    dtype, n, dt = params.dtype, params.shape[0], protocol.dt
    if noise is None:
        noise = torch.randn(n, 3, protocol.num_steps, dtype=dtype)
    gbar, g_syn = conductances(params, protocol)
    q_gates, q_syn = gate_q10s(protocol), protocol.q10(Q10_TAU_SYN)
    v, ca, gates = initial_state(n, protocol, dtype)
    s = torch.zeros(len(SYNAPSES), n, dtype=dtype)
    trace = torch.empty(protocol.num_samples, 3, n, dtype=dtype)
    trace[0] = v
    for k in range(protocol.num_steps):
        m_na, h_na, m_cat, h_cat, m_cas, h_cas, m_a, h_a, m_kca, m_kd, m_h = gates
        g_na, g_cat, g_cas = gbar[0] * m_na**3 * h_na, gbar[1] * m_cat**3 * h_cat, gbar[2] * m_cas**3 * h_cas
        g_a, g_kca, g_kd, g_h = gbar[3] * m_a**3 * h_a, gbar[4] * m_kca**4, gbar[5] * m_kd**4, gbar[6] * m_h
        g_s, ge_s = _synaptic(g_syn, s)
        e_ca = protocol.nernst_factor * torch.log(CA_OUT / ca.clamp(min=CA_MIN))
        ca_inf = CA_REST - F_CA * (g_cat + g_cas) * (v - e_ca)
        g_tot = g_s + g_na + g_cat + g_cas + g_a + g_kca + g_kd + g_h + gbar[7]
        i_inf = (ge_s + g_na * E_NA + (g_cat + g_cas) * e_ca + (g_a + g_kca + g_kd) * E_K + g_h * E_H
                 + gbar[7] * E_LEAK + protocol.noise_density * noise[:, :, k].T)
        v_inf = i_inf / g_tot
        v_next = torch.where(g_tot == 0, v + dt * i_inf / C_M, v_inf + (v - v_inf) * torch.exp(-dt * g_tot / C_M))
        u = v.clamp(-V_CLIP, V_CLIP)
        inf, tau = gate_kinetics(u, ca)
        gates = torch.stack([x_inf + (x - x_inf) * torch.exp(-dt * q / x_tau)
                             for x, x_inf, x_tau, q in zip(gates, inf, tau, q_gates)])
        s_inf = 1.0 / (1.0 + torch.exp((SYN_V_HALF - u) / SYN_SLOPE))
        for j, (_, pre, _, _, k_minus) in enumerate(SYNAPSES):
            tau_s = k_minus * (1.0 - s_inf[pre]) / q_syn
            s[j] = torch.where(dt > tau_s, s_inf[pre], s[j] + (s_inf[pre] - s[j]) * dt / tau_s)
        ca = ca_inf + (ca - ca_inf) * protocol.ca_decay
        v = v_next
        trace[k + 1] = v
    return trace.permute(2, 1, 0).reshape(batch + (3, protocol.num_samples))
