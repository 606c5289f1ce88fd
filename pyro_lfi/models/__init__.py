"""Ready-made simulators written as Pyro models with an :class:`pyro_lfi.Simulator` data site.

* :mod:`pyro_lfi.models.hodgkin_huxley`: a single-compartment Hodgkin-Huxley neuron
  (Pospischil et al. 2008 kinetics, the 8-parameter setting of Gonçalves et al. 2020), batched in
  torch, with a fused (``torch.compile``) integrator. Its constants, protocol, statistics and raw
  integrators live in that subpackage; the Pyro-facing pieces are re-exported here.
* :mod:`pyro_lfi.models.pyloric`: the pyloric network of the stomatogastric ganglion (Prinz et
  al. 2004; three neurons, 7 graded synapses, the 31-parameter setting of Gonçalves et al. 2020),
  batched in torch, with a fused (``torch.compile``) integrator that keeps only threshold
  crossings, observed through the 18 rhythm features of Prinz et al. and Deistler et al. (2022).
* :mod:`pyro_lfi.models.receptive_field`: a V1 simple cell, a Gabor receptive field in a
  Bernoulli GLM driven by white-noise images, observed through its spike-triggered average and
  spike count (a sufficient statistic), with the GLM's exact likelihood for NUTS.
* :mod:`pyro_lfi.models.integrate_and_fire`: the exponential integrate-and-fire neuron under a
  current step, batched Euler-Maruyama in torch, observed through the spike count, first-spike
  latency and inter-spike interval statistics of iid trials (a ``pyro.plate("trials", n)``).
"""

from . import hodgkin_huxley, integrate_and_fire, pyloric, receptive_field
from .hodgkin_huxley import hodgkin_huxley_model, hodgkin_huxley_prior, hodgkin_huxley_simulator
from .integrate_and_fire import integrate_and_fire_model, integrate_and_fire_prior, integrate_and_fire_simulator
from .pyloric import pyloric_model, pyloric_prior, pyloric_simulator
from .receptive_field import receptive_field_likelihood, receptive_field_model, receptive_field_simulator

__all__ = [
    "hodgkin_huxley",
    "hodgkin_huxley_model",
    "hodgkin_huxley_prior",
    "hodgkin_huxley_simulator",
    "integrate_and_fire",
    "integrate_and_fire_model",
    "integrate_and_fire_prior",
    "integrate_and_fire_simulator",
    "pyloric",
    "pyloric_model",
    "pyloric_prior",
    "pyloric_simulator",
    "receptive_field",
    "receptive_field_likelihood",
    "receptive_field_model",
    "receptive_field_simulator",
]
