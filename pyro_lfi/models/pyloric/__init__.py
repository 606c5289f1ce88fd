r"""The pyloric network of the stomatogastric ganglion, batched in torch, with a fused integrator.

The model of Prinz, Bucher & Marder (2004, *Nat. Neurosci.* 7:1345, "Similar network activity
from disparate circuit parameters"), with the single-neuron model of Prinz, Billimoria & Marder
(2003, *J. Neurophysiol.* 90:3998) and the kinetics of Liu et al. (1998), in the 31-parameter
setting of Gonçalves, Lueckmann, Deistler et al. (2020, *eLife* 9:e56261) and Deistler, Macke &
Gonçalves (2022, *PNAS* 119:e2207632119). Equations, constants, initial state, integration
scheme, noise, prior and the features follow their reference implementation,
github.com/mackelab/pyloric (``simulator.pyx``, ``interface.py``, ``prior.py``,
``summary_statistics.py``, ``utils/circuit_parameters.py``); given the same noise draws the
float64 :func:`simulate_reference` reproduces its voltage traces to 1e-12 mV.

Three single-compartment neurons (:math:`j` = AB/PD, LP, PY, each of area 0.628e-3 cm² and
capacitance :math:`C` = 0.6283 nF), each with 8 maximal conductances :math:`\bar g` (the first
24 parameters):

.. math::

    C \frac{dV}{dt} = -\bar g_{Na} m^3 h (V - E_{Na}) - (\bar g_{CaT} m^3 h + \bar g_{CaS} m^3 h)
        (V - E_{Ca}) - (\bar g_A m^3 h + \bar g_{KCa} m^4 + \bar g_{Kd} m^4) (V - E_K)
        - \bar g_H m (V - E_H) - g_{leak} (V - E_{leak})
        - \sum_{s \to j} \bar g_s\, s\, (V - E_s) + I_{noise},

    \frac{dx}{dt} = \frac{x_\infty(V) - x}{\tau_x(V)}, \quad
    x_\infty = \frac{1}{1 + e^{(V + a_x) / b_x}} \;\Big(\times \frac{[Ca]}{[Ca] + 3\,\mu M}
    \text{ for } m_{KCa}\Big),

    \tau_{Ca} \frac{d[Ca]}{dt} = -f I_{Ca} - [Ca] + [Ca]_0, \quad
    E_{Ca} = \frac{RT}{2F} \ln \frac{[Ca]_{out}}{[Ca]},

with :math:`E_{Na} = 50`, :math:`E_K = -80`, :math:`E_H = -20`, :math:`E_{leak} = -50` mV,
:math:`\tau_{Ca} = 200` ms, :math:`f = 14961\,\mu M/\mu A`, :math:`[Ca]_0 = 0.05\,\mu M`,
:math:`[Ca]_{out} = 3` mM, :math:`T = 283` K, and the :math:`a_x, b_x, \tau_x(V)` of Prinz et al.
(2003, Table 2; ``reference.gate_kinetics``). The 7 graded synapses (the last 7 parameters,
strengths in nS: AB-LP, PD-LP, AB-PY, PD-PY, LP-PD, LP-PY, PY-LP; glutamatergic :math:`E_s` =
-70 mV, :math:`\tau_-` = 40 ms, cholinergic -80 mV, 100 ms):

.. math::

    \frac{ds}{dt} = \frac{s_\infty(V_{pre}) - s}{\tau_s}, \quad
    s_\infty = \frac{1}{1 + e^{(-35\,mV - V_{pre}) / 5\,mV}}, \quad \tau_s = \tau_- (1 - s_\infty).

:math:`I_{noise}` is drawn afresh at every step, :math:`N(0, (1\,nA)^2)` per neuron. At another
temperature every rate is multiplied by :math:`Q_{10}^{(T - 283 K)/10 K}` and every conductance
by :math:`1.5^{(T - 283 K)/10 K}` (the reference's default :math:`Q_{10}` s, :class:`Protocol`).
Every gate and synapse starts at 0, V at -50 mV, [Ca] at 0.05 µM.

**Integration.** As the reference: dt = 0.025 ms, each step reading only the previous state;
V by exponential Euler for the conductances and currents frozen there, the gates and calcium
exactly for the rates there, the synapses by forward Euler (:math:`s_{k+1} = s_\infty` when
:math:`dt > \tau_s`):

.. math::

    g = \sum_i g_i, \quad V_\infty = \frac{\sum_i g_i E_i + I_{noise,k}}{g}, \quad
    V_{k+1} = V_\infty + (V_k - V_\infty) e^{-g\,dt / C}, \quad
    x_{k+1} = x_\infty + (x_k - x_\infty) e^{-dt / \tau_x},

    s_{k+1} = s_k + (s_\infty - s_k) \min(1, dt / \tau_s).

Two implementations of the same scheme are shipped: :func:`simulate_reference` (the equations
as written, one torch operation per term, a Python loop over the steps for the whole batch)
and :func:`simulate` (shared exponentials, the 4 distinct synaptic activations instead of 7,
the V step as the increment :math:`dt\,(I_\infty - gV)\,(1 - e^{-g dt/C}) / (g\,dt)`, which
does not cancel in float32, over the batch in chunks, blocks of ``steps_per_call`` steps fused
into one ``torch.compile`` kernel (in float32 by default: gcc 12 fails on the float64 kernel),
and only the threshold crossings kept while simulating, so 11 s of three traces never sit in
memory). Given the same noise draws they agree to float
tolerance (tests/test_pyloric.py).

**Overflow guard.** The rate functions are evaluated at V clipped to ±200 mV and :math:`E_{Ca}`
at [Ca] ≥ 1e-6 µM, which keeps every exponential and logarithm finite in float32; the clips
change nothing for prior draws (V stays within about -105..+55 mV).

**Features** (:func:`summary_features`, :data:`FEATURE_NAMES`): the 15 of Prinz et al. (2004)
used by Gonçalves et al. (2020) (cycle period; burst durations and duty cycles of the three
neurons; start phases of LP and PY; start delays, gaps and phase gaps AB/PD-LP and LP-PY) and
the 3 plateau durations of Deistler et al. (2022), after a burn-in (1 s of 11 s by default),
as the reference's ``PrinzStats``: spikes are excursions above -10 mV timed at their peaks,
grouped into bursts by gaps of 150 ms, bursts shorter than 40 ms dropped; the period is the
mean interval between AB/PD burst starts; the phases are NaN unless the rhythm is triphasic
(every neuron starts exactly one burst in 90% of the AB/PD cycles). NaN marks undefined
features (a neuron that does not burst), which :func:`pyro_lfi.simulate` records as invalid rows.
"""

from .features import FEATURE_NAMES, features_from_events, summary_features, trace_events
from .fused import simulate
from .model import pyloric_model, pyloric_prior, pyloric_simulator
from .protocol import (
    BURSTING_CIRCUIT,
    DEFAULT_PROTOCOL,
    NEURONS,
    PARAMETER_NAMES,
    PARAMETER_UNITS,
    PRIOR_BOUNDS,
    PRIOR_HIGH,
    PRIOR_LOW,
    Protocol,
)
from .reference import simulate_reference

__all__ = [
    "BURSTING_CIRCUIT",
    "DEFAULT_PROTOCOL",
    "FEATURE_NAMES",
    "NEURONS",
    "PARAMETER_NAMES",
    "PARAMETER_UNITS",
    "PRIOR_BOUNDS",
    "PRIOR_HIGH",
    "PRIOR_LOW",
    "Protocol",
    "features_from_events",
    "pyloric_model",
    "pyloric_prior",
    "pyloric_simulator",
    "simulate",
    "simulate_reference",
    "summary_features",
    "trace_events",
]
