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

from .fused import simulate
from .model import hodgkin_huxley_model, hodgkin_huxley_simulator
from .protocol import (
    DEFAULT_PROTOCOL,
    PARAMETER_NAMES,
    PARAMETER_UNITS,
    PRIOR_BOUNDS,
    PRIOR_HIGH,
    PRIOR_LOW,
    SUMMARY_NAMES,
    Protocol,
    hodgkin_huxley_prior,
)
from .reference import simulate_reference
from .statistics import summary_statistics

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
