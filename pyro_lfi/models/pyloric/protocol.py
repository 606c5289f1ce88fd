"""Constants, parameter names, prior bounds and the simulation protocol of the pyloric network.

Every number here is that of the reference implementation (github.com/mackelab/pyloric,
``pyloric/simulator.pyx``, ``pyloric/interface.py``, ``pyloric/prior.py``,
``pyloric/utils/circuit_parameters.py``), which follows Prinz et al. (2003, 2004).
Units: potentials mV, times ms, conductances mS/cm² (synapses nS), currents µA/cm², calcium µM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# -- the membrane ---------------------------------------------------------------------------------

AREA = 0.628e-3  # membrane area of each neuron, cm² (Prinz et al. 2003)
C_M = 0.6283e-3 / AREA  # the reference's capacitance 0.6283 nF over that area: µF/cm² (1.00048)
E_NA, E_K, E_H, E_LEAK = 50.0, -80.0, -20.0, -50.0  # reversal potentials, mV
CA_REST = 0.05  # µM: resting intracellular calcium, also its initial value
CA_OUT = 3000.0  # µM: extracellular calcium (Nernst potential of E_Ca)
TAU_CA = 200.0  # ms: calcium buffering time constant
F_CA = 14961.0 * AREA  # µM per µA/cm²: 14961 µM/µA (the reference's f) times the area
KCA_HALF = 3.0  # µM: [Ca] of half activation of the KCa current's calcium factor Ca / (Ca + 3)
GAS_CONSTANT = 8.31451e3  # mJ / (mol K)
FARADAY = 96485.3415  # C / mol

#: The 8 membrane currents of each neuron, in the order of its 8 conductances, with the exponent
#: of the activation gate and whether the current has an inactivation gate.
CHANNELS = ("Na", "CaT", "CaS", "A", "KCa", "Kd", "H", "Leak")
NEURONS = ("AB/PD", "LP", "PY")

# -- the synapses ---------------------------------------------------------------------------------

#: The 7 graded synapses ``(name, presynaptic, postsynaptic, E_syn mV, k_minus ms)``: glutamatergic
#: (AB, LP, PY: -70 mV, 40 ms) and cholinergic (PD: -80 mV, 100 ms), as ``build_conns`` of the
#: reference (Prinz et al. 2004, p. 1351). AB and PD are one electrically coupled unit, neuron 0.
SYNAPSES = (
    ("AB-LP", 0, 1, -70.0, 40.0),
    ("PD-LP", 0, 1, -80.0, 100.0),
    ("AB-PY", 0, 2, -70.0, 40.0),
    ("PD-PY", 0, 2, -80.0, 100.0),
    ("LP-PD", 1, 0, -70.0, 40.0),
    ("LP-PY", 1, 2, -70.0, 40.0),
    ("PY-LP", 2, 1, -70.0, 40.0),
)
SYN_V_HALF, SYN_SLOPE = -35.0, 5.0  # mV: s_inf = 1 / (1 + exp((V_half - V_pre) / slope))
NS = 1e-6 / AREA  # one nS as a conductance density, mS/cm²

# -- temperature ----------------------------------------------------------------------------------

T_REF = 283.0  # K: the temperature at which every Q10 factor is 1
#: Default Q10s of the reference (``interface.simulate``'s ``defaults_dict``, with CaS and KCa
#: activation from Caplan et al. 2014): maximal conductances (membrane and synapses), the
#: time constants of the 7 activation gates (Na, CaT, CaS, A, KCa, Kd, H), of the 4 inactivation
#: gates, of calcium buffering and of the synapses.
Q10_GBAR = 1.5
Q10_TAU_M = (2.4, 2.4, 2.0, 2.4, 1.6, 2.4, 2.4)
Q10_TAU_H = 2.8
Q10_TAU_CA = 2.0
Q10_TAU_SYN = 1.7

# -- guards ---------------------------------------------------------------------------------------

V_CLIP = 200.0  # rate functions are evaluated at V clipped to ±V_CLIP mV (every exponential finite)
CA_MIN = 1e-6  # µM: E_Ca is evaluated at max([Ca], CA_MIN) (a finite logarithm)

# -- parameters and prior -------------------------------------------------------------------------

PARAMETER_NAMES = tuple(f"{n} {c}" for n in NEURONS for c in CHANNELS) + tuple(f"{s[0]} synapse" for s in SYNAPSES)
"""The 31 parameters: 8 maximal conductances of AB/PD, LP and PY, then the 7 synaptic strengths."""

PARAMETER_UNITS = ("mS/cm²",) * 24 + ("nS",) * 7
"""Their units. The reference scales conductance densities by the area 0.628e-3 cm² and takes
synaptic strengths in log(mS); here ``exp`` of its value times 1e6 is the strength in nS."""

_GBAR_LOW = ((0, 0, 0, 0, 0, 25, 0, 0), (0, 0, 2, 10, 0, 0, 0, 0.01), (0, 0, 0, 30, 0, 50, 0, 0))
_GBAR_HIGH = ((500, 7.5, 8, 60, 15, 150, 0.02, 0.01), (200, 2.5, 12, 60, 10, 125, 0.06, 0.04),
              (600, 12.5, 4, 60, 5, 150, 0.06, 0.04))
PRIOR_BOUNDS = dict(zip(PARAMETER_NAMES, [(float(lo), float(hi)) for low, high in zip(_GBAR_LOW, _GBAR_HIGH)
                                          for lo, hi in zip(low, high)]
                                         + [(0.01, 10_000.0)] + [(0.01, 1000.0)] * 6))
"""Prior bounds ``(low, high)`` of Gonçalves et al. (2020), as ``prior.py`` of the reference:
Prinz et al.'s ranges of each conductance padded by (100, 2.5, 2, 10, 5, 25, 0.01, 0.01) mS/cm²
and floored at 0 (uniform); synapses from 1e-8 to 1e-3 mS, AB-LP to 1e-2 mS (log-uniform)."""

BURSTING_CIRCUIT = (
    286.921725, 0.0975099899, 5.53758392, 21.755384, 12.1938578, 123.777092, 0.00964585042, 0.00516584517,
    167.802913, 0.994858342, 7.71058188, 19.2827439, 7.30915903, 43.390796, 0.050381617, 0.021214225,
    477.249899, 5.10924385, 0.713955321, 39.6705037, 4.89271588, 59.2566636, 0.0551743568, 0.0121729756,
    19.76013764161572, 25.324435457075257, 0.9266508383434998, 114.12032885083114, 136.34225672239697,
    0.13995649676763552, 717.5028845929306,
)
"""A circuit with a triphasic rhythm (cycle period about 1 s), in the order of
:data:`PARAMETER_NAMES`: the one of the reference's tests (``tests/test_simulator.py``,
``test_valid_simulation``), its synapses converted from log(mS) to nS."""

PRIOR_LOW = tuple(low for low, _ in PRIOR_BOUNDS.values())
PRIOR_HIGH = tuple(high for _, high in PRIOR_BOUNDS.values())
NUM_CONDUCTANCES = 24


@dataclass(frozen=True)
class Protocol:
    """The simulation: time step, duration, burn-in, noise, temperature, initial potential.

    Times in ms. The defaults are those of the reference and of Gonçalves et al. (2020) and
    Deistler et al. (2022): 11 s at dt = 0.025 ms, of which the first second is discarded, a
    noise current of standard deviation 0.001 µA (1 nA) drawn afresh at every step (not scaled
    with dt), 283 K. Step ``k`` (``k = 0 .. num_steps - 1``) takes sample ``k`` to ``k + 1``;
    the features are read from samples ``burn_in_index .. num_steps``.
    """

    dt: float = 0.025
    duration: float = 11_000.0
    burn_in: float = 1_000.0
    noise_std: float = 0.001  # µA per neuron and step (the reference's noise_std)
    temperature: float = 283.0  # K
    v0: float = E_LEAK

    @property
    def num_steps(self) -> int:
        return round(self.duration / self.dt)

    @property
    def num_samples(self) -> int:
        """Length of a trace: the initial state and one sample per step."""
        return self.num_steps + 1

    @property
    def burn_in_index(self) -> int:
        return round(self.burn_in / self.dt)

    @property
    def noise_density(self) -> float:
        """The noise current's standard deviation as a current density, µA/cm²."""
        return self.noise_std / AREA

    def output_width(self, output: str, subsample: int = 1) -> int:
        """Length of a simulated row: 18 features, or 3 traces every ``subsample`` samples."""
        if output == "features":
            return 18
        return 3 * len(range(0, self.num_samples, subsample))

    def q10(self, q10: float) -> float:
        """The temperature factor :math:`Q_{10}^{(T - 283\\,K) / 10\\,K}`."""
        return q10 ** ((self.temperature - T_REF) / 10.0)

    @property
    def nernst_factor(self) -> float:
        """:math:`RT / zF` for calcium (z = 2), mV."""
        return GAS_CONSTANT * self.temperature / (2.0 * FARADAY)

    @property
    def ca_decay(self) -> float:
        """:math:`e^{-dt\\, q / \\tau_{Ca}}`, the calcium buffer's factor per step."""
        return math.exp(-self.dt * self.q10(Q10_TAU_CA) / TAU_CA)


DEFAULT_PROTOCOL = Protocol()
