"""Ready-made simulators written as Pyro models with an :class:`pyro_lfi.Simulator` data site.

* :mod:`pyro_lfi.models.hodgkin_huxley`: a single-compartment Hodgkin-Huxley neuron
  (Pospischil et al. 2008 kinetics, the 8-parameter setting of Gonçalves et al. 2020), batched in
  torch, with a fused (``torch.compile``) integrator. Its constants, protocol, statistics and raw
  integrators live in that subpackage; the Pyro-facing pieces are re-exported here.
"""

from . import hodgkin_huxley
from .hodgkin_huxley import hodgkin_huxley_model, hodgkin_huxley_prior, hodgkin_huxley_simulator

__all__ = ["hodgkin_huxley", "hodgkin_huxley_model", "hodgkin_huxley_prior", "hodgkin_huxley_simulator"]
