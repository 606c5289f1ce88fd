"""The recording protocol, constants, parameter names and prior of the Hodgkin-Huxley neuron."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import Tensor

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

    def output_width(self, output: str, subsample: int = 1) -> int:
        """Length of a simulated row: the 7 statistics (``output="summary"``) or a trace kept
        every ``subsample`` samples, ``V(0)`` first (``"trace"``)."""
        return len(SUMMARY_NAMES) if output == "summary" else len(range(0, self.num_samples, subsample))

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
