"""Ready-made simulators written as Pyro models with an :class:`pyro_lfi.Simulator` data site.

* :mod:`pyro_lfi.models.hodgkin_huxley`: a single-compartment Hodgkin-Huxley neuron
  (Pospischil et al. 2008 kinetics, the 8-parameter setting of Gonçalves et al. 2020), batched in
  torch, with a fused (``torch.compile``) integrator.
"""

from .hodgkin_huxley import (
    DEFAULT_PROTOCOL,
    PARAMETER_NAMES,
    PARAMETER_UNITS,
    PRIOR_BOUNDS,
    PRIOR_HIGH,
    PRIOR_LOW,
    SUMMARY_NAMES,
    Protocol,
    hodgkin_huxley_model,
    hodgkin_huxley_prior,
    hodgkin_huxley_simulator,
    simulate,
    simulate_reference,
    summary_statistics,
)

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
