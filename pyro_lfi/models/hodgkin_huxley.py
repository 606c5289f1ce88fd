r"""A single-compartment Hodgkin-Huxley neuron, batched in torch, with a fused integrator.

The model is the one of Gonçalves et al. (2020, *eLife* 9:e56261, "Training deep neural density
estimators to identify mechanistic models of neural dynamics", section "Hodgkin-Huxley model"),
also used in sbi's Hodgkin-Huxley tutorial: a point neuron with sodium, delayed-rectifier
potassium, slow non-inactivating (M-type) potassium and leak currents, with the kinetics of
Pospischil et al. (2008, *Biol. Cybern.* 99:427, "Minimal Hodgkin-Huxley type models for
different classes of cortical and thalamic neurons"), driven by a current step and by additive
white noise:

.. math::

    C \frac{dV}{dt} = \bar g_{Na} m^3 h (E_{Na} - V) + \bar g_K n^4 (E_K - V)
        + \bar g_M p (E_K - V) + g_{leak} (E_{leak} - V) + I(t) + \sigma \xi(t),

    \frac{dx}{dt} = \alpha_x(V) (1 - x) - \beta_x(V) x \quad (x = m, h, n), \qquad
    \frac{dp}{dt} = \frac{p_\infty(V) - p}{\tau_p(V)},

with :math:`u = V - V_T` and (rates in 1/ms, voltages in mV)

.. math::

    \alpha_m = \frac{-0.32 (u - 13)}{e^{-(u - 13)/4} - 1}, \quad
    \beta_m = \frac{0.28 (u - 40)}{e^{(u - 40)/5} - 1}, \quad
    \alpha_h = 0.128\, e^{-(u - 17)/18}, \quad
    \beta_h = \frac{4}{1 + e^{-(u - 40)/5}},

    \alpha_n = \frac{-0.032 (u - 15)}{e^{-(u - 15)/5} - 1}, \quad
    \beta_n = 0.5\, e^{-(u - 10)/40}, \quad
    p_\infty = \frac{1}{1 + e^{-(V + 35)/10}}, \quad
    \tau_p = \frac{\tau_{max}}{3.3\, e^{(V + 35)/20} + e^{-(V + 35)/20}}.

:math:`C = 1\,\mu F/cm^2`, :math:`E_{Na} = 53` mV, :math:`E_K = -107` mV, :math:`V(0) = -70` mV
with every gate at its steady state. The stimulus is a step of 0.5 nA into a soma of area
:math:`\pi (70\,\mu m)^2` (3.25 µA/cm²) from 10 to 110 ms of a 120 ms run at dt = 0.01 ms
(12,000 steps, 12,001 samples with V(0)). The 8 free parameters, in this order, are
:data:`PARAMETER_NAMES`: :math:`\bar g_{Na}, \bar g_K, g_{leak}, \bar g_M, \tau_{max}, V_T,
\sigma, E_{leak}`, with the uniform prior of Gonçalves et al. (:data:`PRIOR_BOUNDS`).

**Integration.** Exponential Euler, as the reference implementations (Gonçalves et al.'s
``HodgkinHuxleyBioPhys.py``, sbi's tutorial): each step first advances V exactly for the
conductances and currents frozen at the previous step (the noise enters as
:math:`\sigma \xi_k / \sqrt{dt}` added to the current, :math:`\xi_k \sim N(0, 1)`), then each
gate exactly for the rates at the new V:

.. math::

    g = \sum_i g_i, \quad V_\infty = \frac{\sum_i g_i E_i + I_k + \sigma \xi_k / \sqrt{dt}}{g},
    \quad V_{k+1} = V_\infty + (V_k - V_\infty) e^{-g\, dt / C},

    x_{k+1} = x_\infty + (x_k - x_\infty) e^{-dt / \tau_x}, \quad
    x_\infty = \frac{\alpha_x}{\alpha_x + \beta_x}, \quad \tau_x = \frac{1}{\alpha_x + \beta_x}
    \quad \text{(at } V_{k+1}\text{)}.

Two implementations of the same scheme are shipped:

* :func:`simulate_reference`: the equations as written, one torch operation per term, a Python
  loop over the 12,000 steps for the whole batch at once (the straightforward eager baseline).
* :func:`simulate`: the same scheme, algebraically rearranged to use fewer and better-conditioned
  operations (10 exponentials per step instead of 14: :math:`\beta_m, \beta_h, \alpha_n` share
  one exponential, :math:`p_\infty, \tau_p` another; the V step written as the increment
  :math:`V_{k+1} = V_k + dt\,(I_{ion} + I_k + \sigma\xi_k/\sqrt{dt})\,\varphi(g\,dt)`,
  :math:`\varphi(x) = (1 - e^{-x}) / x`, which does not cancel in float32 when g is small),
  over the batch in chunks, with blocks of ``steps_per_call`` steps fused into one compiled
  kernel by ``torch.compile`` (inductor), so that the state stays in registers across steps and
  Python runs once per block. Given the same noise draws, the two agree to float tolerance
  (tests/test_hodgkin_huxley.py; ``python -m pyro_lfi.benchmark.hodgkin_huxley``).

**Overflow guard.** The rate functions are evaluated at :math:`V - V_T` clipped to ±300 mV, which
keeps every exponential finite in float32 (Gonçalves et al. clip exponents below -500 in float64
for the same purpose). For prior draws V stays between about -105 and +55 mV, where the clip
changes nothing; only at the prior's extreme corners (potassium and leak conductances all near
their lower bounds, so that nothing repolarizes) does V climb to a few hundred mV, where the
rates have saturated anyway. Both implementations clip alike.

**Summary statistics** (:func:`summary_statistics`, :data:`SUMMARY_NAMES`), as in sbi's
tutorial: the number of spikes (upward crossings of -10 mV during the stimulus), the mean of V
before the stimulus and its standard deviation over the last tenth of that window, and the mean,
variance, skewness and (non-excess) kurtosis of V during the stimulus.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ..simulator import Simulator

__all__ = [
    "DEFAULT_PROTOCOL",
    "PARAMETER_NAMES",
    "PARAMETER_UNITS",
    "PRIOR_BOUNDS",
    "PRIOR_HIGH",
    "PRIOR_LOW",
    "SUMMARY_NAMES",
    "Protocol",
    "hodgkin_huxley_model",
    "hodgkin_huxley_prior",
    "hodgkin_huxley_simulator",
    "simulate",
    "simulate_reference",
    "summary_statistics",
]

# -- constants ------------------------------------------------------------------------------------

C_M = 1.0  # membrane capacitance, µF/cm²
E_NA = 53.0  # sodium reversal potential, mV
E_K = -107.0  # potassium reversal potential, mV
SOMA_AREA = math.pi * (70.0e-4) ** 2  # cm² (radius 70 µm)
STEP_CURRENT = 5e-4 / SOMA_AREA  # 0.5 nA = 5e-4 µA over the soma: µA/cm² (about 3.25)
U_CLIP = 300.0  # rate functions are evaluated at V - V_T clipped to ±U_CLIP mV (overflow guard)

PARAMETER_NAMES = ("g_Na", "g_K", "g_leak", "g_M", "tau_max", "V_T", "sigma", "E_leak")
"""The 8 parameters, in the order of the last dimension of ``params``."""

PARAMETER_UNITS = ("mS/cm²", "mS/cm²", "mS/cm²", "mS/cm²", "ms", "mV", "µA/cm²·ms^½", "mV")
"""Their units. ``sigma`` scales :math:`\\xi_k / \\sqrt{dt}`, a current density added at each step."""

PRIOR_BOUNDS = {
    "g_Na": (0.5, 80.0),  # maximal sodium conductance, mS/cm²
    "g_K": (1e-4, 15.0),  # maximal delayed-rectifier potassium conductance, mS/cm²
    "g_leak": (1e-4, 0.6),  # leak conductance, mS/cm²
    "g_M": (1e-4, 0.6),  # maximal slow (M-type) potassium conductance, mS/cm²
    "tau_max": (50.0, 3000.0),  # time-constant scale of the M-current, ms
    "V_T": (-90.0, -40.0),  # threshold shift of the Na/K rate functions, mV
    "sigma": (1e-4, 0.15),  # noise scale, µA/cm²·ms^½
    "E_leak": (-100.0, -35.0),  # leak reversal potential, mV
}
"""Uniform prior bounds ``(low, high)`` of each parameter, from Gonçalves et al. (2020), as
in their code (github.com/mackelab/IdentifyMechanisticModels_2020, ``5_hh/model/utils.py``,
``prior(..., prior_extent=True)``), which parametrizes :math:`-V_T \\in [40, 90]` and
:math:`-E_{leak} \\in [35, 100]`; here the signed potentials are used."""

PRIOR_LOW = tuple(low for low, _ in PRIOR_BOUNDS.values())
PRIOR_HIGH = tuple(high for _, high in PRIOR_BOUNDS.values())

SUMMARY_NAMES = (
    "spike_count",
    "resting_mean",
    "resting_std",
    "stimulus_mean",
    "stimulus_variance",
    "stimulus_skewness",
    "stimulus_kurtosis",
)
"""The 7 summary statistics returned by :func:`summary_statistics`, in order."""


@dataclass(frozen=True)
class Protocol:
    """The recording: time step, duration, current step, initial potential, spike threshold.

    Times in ms, current in µA/cm², potentials in mV. The defaults are those of Gonçalves et al.
    (2020) and sbi's tutorial. Step ``k`` (``k = 0 .. num_steps - 1``) takes ``V[k]`` to
    ``V[k + 1]`` with the current ``amplitude`` if ``t_on <= k dt < t_off``.
    """

    dt: float = 0.01
    duration: float = 120.0
    t_on: float = 10.0
    t_off: float = 110.0
    amplitude: float = STEP_CURRENT
    v0: float = -70.0
    spike_threshold: float = -10.0

    @property
    def num_steps(self) -> int:
        return round(self.duration / self.dt)

    @property
    def num_samples(self) -> int:
        """Length of a trace: ``V(0)`` and one sample per step."""
        return self.num_steps + 1

    @property
    def on_index(self) -> int:
        return round(self.t_on / self.dt)

    @property
    def off_index(self) -> int:
        return round(self.t_off / self.dt)

    def current(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The injected current at each step, ``[num_steps]``."""
        current = torch.zeros(self.num_steps, dtype=dtype)
        current[self.on_index : self.off_index] = self.amplitude
        return current


DEFAULT_PROTOCOL = Protocol()


def hodgkin_huxley_prior(dtype: torch.dtype | None = None) -> dist.Distribution:
    """The uniform prior over the 8 parameters (:data:`PRIOR_BOUNDS`), event shape ``(8,)``."""
    dtype = dtype or torch.get_default_dtype()
    low = torch.tensor(PRIOR_LOW, dtype=dtype)
    high = torch.tensor(PRIOR_HIGH, dtype=dtype)
    return dist.Uniform(low, high).to_event(1)


# -- the reference implementation -------------------------------------------------------------------


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


def _initial_state(params: Tensor, v0: float) -> Tensor:
    """``[5, n]``: V(0) and the gates ``m, h, n, p`` at their steady states there."""
    v = torch.full(params.shape[:1], v0, dtype=params.dtype)
    a_m, b_m, a_h, b_h, a_n, b_n, p_inf, _ = _rates(v, params[:, 5], params[:, 4])
    return torch.stack([v, a_m / (a_m + b_m), a_h / (a_h + b_h), a_n / (a_n + b_n), p_inf])


def _flat(params, noise, dtype: torch.dtype | None, num_steps: int) -> tuple[Tensor, Tensor | None, torch.Size]:
    params = torch.as_tensor(params)
    if params.shape[-1:] != (len(PARAMETER_NAMES),):
        raise ValueError(f"params must have shape [..., {len(PARAMETER_NAMES)}], got {tuple(params.shape)}")
    if dtype is None:
        dtype = params.dtype if params.is_floating_point() else torch.get_default_dtype()
    batch = params.shape[:-1]
    params = params.detach().reshape(-1, len(PARAMETER_NAMES)).to(dtype)
    if noise is not None:
        noise = torch.as_tensor(noise)
        if noise.shape != batch + (num_steps,):
            raise ValueError(f"noise must have shape {tuple(batch + (num_steps,))} (batch + (num_steps,)), "
                             f"got {tuple(noise.shape)}")
        noise = noise.detach().reshape(-1, num_steps).to(dtype)
    return params, noise, batch


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
    params, noise, batch = _flat(params, noise, dtype, protocol.num_steps)
    dtype = params.dtype
    if noise is None:
        noise = torch.randn(params.shape[0], protocol.num_steps, dtype=dtype)
    g_na, g_k, g_leak, g_m, tau_max, v_t, sigma, e_leak = params.unbind(-1)
    current = protocol.current(dtype).tolist()
    dt = protocol.dt
    v, m, h, n, p = _initial_state(params, protocol.v0)
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


# -- the fused implementation ----------------------------------------------------------------------

_EXP_M5 = math.exp(-5.0)
_EFUN_SERIES = 0.1  # below this |z|, z / (e^z - 1) by its Taylor series (float32 cancellation)


def _efun_fast(z: Tensor, ez: Tensor) -> Tensor:
    """:math:`z / (e^z - 1)` given :math:`e^z`; the series :math:`1 - z/2 + z^2/12 - z^4/720`
    (error < 3e-11) near 0, where ``ez - 1`` would cancel."""
    z2 = z * z
    series = 1.0 + z * -0.5 + z2 * (1.0 / 12.0 - z2 * (1.0 / 720.0))
    return torch.where(z.abs() < _EFUN_SERIES, series, z / (ez - 1.0))


def _phi(x: Tensor) -> Tensor:
    """:math:`(1 - e^{-x}) / x` for ``x >= 0``, by its Taylor series (error < 3e-10) below 0.1."""
    series = 1.0 + x * (-1.0 / 2 + x * (1.0 / 6 + x * (-1.0 / 24 + x * (1.0 / 120 - x * (1.0 / 720)))))
    return torch.where(x < 0.1, series, (1.0 - torch.exp(-x)) / x)


def _make_block(num_steps: int, dt: float) -> Callable[..., tuple[Tensor, Tensor]]:
    """The fused update of ``num_steps`` steps: ``(state, params, noise, current) -> (state, V)``.

    ``state [5, n]`` (V, m, h, n, p), ``params [8, n]`` packed by :func:`_pack`, ``noise
    [num_steps, n]``, ``current [num_steps, 1]``; returns the new state and ``V [num_steps, n]``
    after each step.
    """

    def block(state: Tensor, params: Tensor, noise: Tensor, current: Tensor) -> tuple[Tensor, Tensor]:
        v, m, h, n, p = state.unbind(0)
        g_na, g_k, g_leak, g_m, v_t, e_leak, noise_scale, inv_tau_max = params.unbind(0)
        trace = []
        for k in range(num_steps):
            gna = g_na * (m * m * m * h)
            n2 = n * n
            gk = g_k * (n2 * n2)
            gm = g_m * p
            g = gna + gk + gm + g_leak
            i_tot = (gna * (E_NA - v) + (gk + gm) * (E_K - v) + g_leak * (e_leak - v)
                     + current[k] + noise_scale * noise[k])
            v = v + (dt * i_tot) * _phi((dt / C_M) * g) / C_M
            u = (v - v_t).clamp(-U_CLIP, U_CLIP)
            # beta_m, beta_h and alpha_n share exp(0.2 (u - 40)); p_inf and tau_p share exp((V + 35) / 20)
            z_am = -0.25 * (u - 13.0)
            z_bm = 0.2 * (u - 40.0)
            e_bm = torch.exp(z_bm)
            inv_e_bm = 1.0 / e_bm
            a_m = 1.28 * _efun_fast(z_am, torch.exp(z_am))
            b_m = 1.4 * _efun_fast(z_bm, e_bm)
            a_h = 0.128 * torch.exp((u - 17.0) * (-1.0 / 18.0))
            b_h = 4.0 / (1.0 + inv_e_bm)
            a_n = 0.16 * _efun_fast(-z_bm - 5.0, _EXP_M5 * inv_e_bm)
            b_n = 0.5 * torch.exp((u - 10.0) * (-1.0 / 40.0))
            e_p = torch.exp(0.05 * (u + v_t + 35.0))
            e_p2 = e_p * e_p
            p_inf = e_p2 / (e_p2 + 1.0)
            s = a_m + b_m
            m_inf = a_m / s
            m = m_inf + (m - m_inf) * torch.exp(-dt * s)
            s = a_h + b_h
            h_inf = a_h / s
            h = h_inf + (h - h_inf) * torch.exp(-dt * s)
            s = a_n + b_n
            n_inf = a_n / s
            n = n_inf + (n - n_inf) * torch.exp(-dt * s)
            p = p_inf + (p - p_inf) * torch.exp((-dt) * (3.3 * e_p + 1.0 / e_p) * inv_tau_max)
            trace.append(v)
        return torch.stack([v, m, h, n, p]), torch.stack(trace)

    return block


def _pack(params: Tensor, dt: float) -> Tensor:
    """``[n, 8]`` parameters to the ``[8, n]`` rows the fused block reads."""
    g_na, g_k, g_leak, g_m, tau_max, v_t, sigma, e_leak = params.unbind(-1)
    return torch.stack([g_na, g_k, g_leak, g_m, v_t, e_leak, sigma / math.sqrt(dt), 1.0 / tau_max])


_COMPILED: dict[tuple[int, float], Callable[..., tuple[Tensor, Tensor]]] = {}
_COMPILE_FAILED: list[str] = []
_INDUCTOR_OPTIONS = {
    # one loop over the batch for the whole block: no intermediate buffers between the steps
    "max_fusion_size": 1_000_000,
    "realize_opcount_threshold": 1_000_000,
    "realize_reads_threshold": 1_000_000,
    "realize_acc_reads_threshold": 1_000_000,
    # an OpenMP loop on torch's current number of threads, whatever the chunk size it was traced with
    "cpp.dynamic_threads": True,
}


def _block_fn(num_steps: int, dt: float, backend: str) -> Callable[..., tuple[Tensor, Tensor]]:
    """The block update of ``num_steps`` steps: compiled (once per process) or eager."""
    if backend == "eager" or (backend == "auto" and _COMPILE_FAILED):
        return _make_block(num_steps, dt)
    key = (num_steps, dt)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_make_block(num_steps, dt), fullgraph=True, options=_INDUCTOR_OPTIONS)
    return _COMPILED[key]


# -- summary statistics ---------------------------------------------------------------------------


class _Statistics:
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
    stats = _Statistics(flat.shape[0], protocol, v.dtype)
    for start in range(0, flat.shape[1], 1000):
        stats.update(flat[:, start : start + 1000].T)
    return stats.result().reshape(v.shape[:-1] + (len(SUMMARY_NAMES),))


# -- the chunked driver ---------------------------------------------------------------------------


@torch.no_grad()
def _run_blocks(block: Callable[..., None], size: int, params: Tensor, noise: Tensor | None,
                protocol: Protocol, output: str, subsample: int, compiled: bool) -> Tensor:
    """One chunk, ``size`` steps per call of ``block``: ``[n, 7]`` summaries or ``[n, samples]`` traces.

    A compiled block is traced once, at the first chunk, dynamic in the chunk size (the tensors
    marked so) with its float constants specialized; its noise comes in a tensor of its own
    rather than a view at varying offsets into a larger one, which would be traced again. The
    summary statistics are accumulated over windows of at least 100 steps, so that a chunk never
    holds whole traces for them.
    """
    dtype, steps, n = params.dtype, protocol.num_steps, params.shape[0]
    state = _initial_state(params, protocol.v0)
    packed = _pack(params, protocol.dt)
    draws = torch.empty(size, n, dtype=dtype)
    if compiled:  # one trace for every chunk size (floats stay constants)
        for t in (state, packed, draws):
            torch._dynamo.mark_dynamic(t, 1)
    current = protocol.current(dtype)
    distinct: dict[tuple[float, ...], Tensor] = {}  # the current of each block, one tensor per distinct block
    stimuli = [distinct.setdefault(tuple(values), torch.tensor(values, dtype=dtype)[:, None])
               for values in (current[i : i + size].tolist() for i in range(0, steps, size))]
    if output == "summary":
        stats = _Statistics(n, protocol, dtype)
        stats.update(state[:1])
        window = torch.empty(size * math.ceil(max(100, (1 << 17) // n) / size), n, dtype=dtype)  # >= 100 steps
        filled = 0
    else:
        trace = torch.empty(len(range(0, protocol.num_samples, subsample)), n, dtype=dtype)
        trace[0] = state[0]
    for start, stimulus in zip(range(0, steps, size), stimuli):
        stop = min(start + size, steps)
        if stop - start < size:  # the last, shorter block: eagerly
            block = _make_block(stop - start, protocol.dt)
            draws = draws[: stop - start]
        if noise is None:
            torch.randn(draws.shape, dtype=dtype, out=draws)
        else:
            draws.copy_(noise[:, start:stop].T)
        state, out = block(state, packed, draws, stimulus)  # out: samples start + 1 .. stop
        if output == "summary":
            window[filled : filled + stop - start] = out
            filled += stop - start
            if filled + size > window.shape[0] or stop == steps:
                stats.update(window[:filled])
                filled = 0
        else:
            first = start + 1 + (-(start + 1)) % subsample
            if first <= stop:
                trace[first // subsample : stop // subsample + 1] = out[first - start - 1 :: subsample]
    return stats.result() if output == "summary" else trace.T


def _simulate_chunk(params: Tensor, noise: Tensor | None, protocol: Protocol, backend: str,
                    steps_per_call: int, output: str, subsample: int) -> Tensor:
    size = min(steps_per_call, protocol.num_steps)
    block = _block_fn(size, protocol.dt, backend)
    run = functools.partial(_run_blocks, size=size, params=params, noise=noise, protocol=protocol, output=output,
                            subsample=subsample)
    if backend == "eager" or params.shape[0] == 0:
        return run(block, compiled=False)
    if params.shape[0] == 1:  # the compiled kernel is dynamic in sizes >= 2 (sizes 0 and 1 are special to dynamo)
        twice = None if noise is None else noise.expand(2, -1)
        return _simulate_chunk(params.expand(2, -1), twice, protocol, backend, steps_per_call, output, subsample)[:1]
    try:
        return run(block, compiled=backend != "eager" and not _COMPILE_FAILED)
    except Exception as err:  # no C++ compiler, unsupported platform, ...: the same blocks, eagerly
        if backend != "auto" or _COMPILE_FAILED:
            raise
        _COMPILE_FAILED.append(f"{type(err).__name__}: {err}")
        warnings.warn(f"torch.compile of the Hodgkin-Huxley step failed ({_COMPILE_FAILED[-1][:300]}); "
                      "running it eagerly (slower)", RuntimeWarning, stacklevel=4)
        return run(_make_block(size, protocol.dt), compiled=False)


@torch.no_grad()
def simulate(params, noise: Tensor | None = None, *, output: str = "trace", subsample: int = 1,
             protocol: Protocol = DEFAULT_PROTOCOL, dtype: torch.dtype | None = None,
             chunk_size: int | None = None, backend: str = "auto", steps_per_call: int = 10) -> Tensor:
    """Simulate the neuron for each parameter set: traces or summary statistics (fast path).

    The batch is processed in chunks of ``chunk_size`` parameter sets; within a chunk, blocks of
    ``steps_per_call`` steps run as one kernel compiled by ``torch.compile`` (inductor; it needs
    a C++ compiler) on torch's ``get_num_threads()`` threads. The kernel is compiled once per
    process, block length, dt and thread count (about a minute the first time on 2 CPU cores,
    several seconds when inductor's on-disk cache has it) and serves every batch size.

    :param params: ``[..., 8]`` parameters in the order of :data:`PARAMETER_NAMES`.
    :param noise: ``[..., num_steps]`` standard normal draws :math:`\\xi_k` (the same as for
        :func:`simulate_reference` gives the same trace up to float rounding); drawn from torch's
        global RNG, ``[steps_per_call, chunk]`` at a time, if omitted.
    :param output: ``"trace"`` (``[..., ceil(num_samples / subsample)]``, mV) or ``"summary"``
        (``[..., 7]``, :func:`summary_statistics` of the full-resolution traces, which are
        never held in memory whole).
    :param subsample: keep every ``subsample``-th sample of a trace (``V(0)`` first).
    :param protocol: the recording (:class:`Protocol`).
    :param dtype: computation dtype (default: that of ``params`` if floating, else torch's
        default); float32 is the fast one.
    :param chunk_size: parameter sets per chunk (default ``4096 * torch.get_num_threads()``).
    :param backend: ``"auto"`` (compile; if compilation fails, warn and run eagerly), ``"inductor"``
        (compile or raise) or ``"eager"`` (the same blocks, uncompiled: slow, no compilation).
    :param steps_per_call: steps fused into one kernel call: more means less Python overhead per
        step and a longer compilation.
    """
    if output not in ("trace", "summary"):
        raise ValueError(f"output must be 'trace' or 'summary', got {output!r}")
    if backend not in ("auto", "inductor", "eager"):
        raise ValueError(f"backend must be 'auto', 'inductor' or 'eager', got {backend!r}")
    if subsample < 1 or steps_per_call < 1:
        raise ValueError("subsample and steps_per_call must be positive")
    params, noise, batch = _flat(params, noise, dtype, protocol.num_steps)
    chunk_size = chunk_size or 4096 * torch.get_num_threads()
    width = len(SUMMARY_NAMES) if output == "summary" else len(range(0, protocol.num_samples, subsample))
    results = []
    for start in range(0, params.shape[0], chunk_size):
        chunk_noise = None if noise is None else noise[start : start + chunk_size]
        results.append(_simulate_chunk(params[start : start + chunk_size], chunk_noise, protocol, backend,
                                       steps_per_call, output, subsample))
    if not results:
        return torch.empty(batch + (width,), dtype=params.dtype)
    return torch.cat(results).reshape(batch + (width,))


# -- the Pyro model -------------------------------------------------------------------------------


def hodgkin_huxley_simulator(params: Tensor, *, output: str = "summary", subsample: int = 20,
                             protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                             chunk_size: int | None = None) -> Tensor:
    """:func:`simulate` in float32 with the noise from torch's global RNG, for an
    :class:`~pyro_lfi.Simulator` site: ``params [..., 8]`` to ``[..., 7]`` summary statistics
    (``output="summary"``) or ``[..., ceil(num_samples / subsample)]`` traces (``"trace"``)."""
    return simulate(params, output=output, subsample=subsample, protocol=protocol, dtype=torch.float32,
                    chunk_size=chunk_size, backend=backend)


def hodgkin_huxley_model(x: Tensor | None = None, *, output: str = "summary", subsample: int = 20,
                         protocol: Protocol = DEFAULT_PROTOCOL, backend: str = "auto",
                         chunk_size: int | None = None) -> Tensor:
    """Pyro model: ``theta ~ Uniform(PRIOR_LOW, PRIOR_HIGH)`` (8 parameters, :data:`PARAMETER_NAMES`),
    ``x ~ Simulator(hodgkin_huxley_simulator, theta)``.

    ``x`` is the 7 summary statistics (``output="summary"``, :data:`SUMMARY_NAMES`) or the
    membrane potential every ``subsample`` steps (``output="trace"``; 601 samples, every 0.2 ms,
    by default), e.g. for a learned embedding net.

    >>> sims = pyro_lfi.simulate(hodgkin_huxley_model, 10_000, seed=0)           # doctest: +SKIP
    >>> guide = pyro_lfi.NeuralPosterior(hodgkin_huxley_model, observed="x")      # doctest: +SKIP
    """
    theta = pyro.sample("theta", hodgkin_huxley_prior())
    fn = functools.partial(hodgkin_huxley_simulator, output=output, subsample=subsample, protocol=protocol,
                           backend=backend, chunk_size=chunk_size)
    width = len(SUMMARY_NAMES) if output == "summary" else len(range(0, protocol.num_samples, subsample))
    return pyro.sample("x", Simulator(fn, theta, event_shape=(width,), param_event_dims=1), obs=x)
