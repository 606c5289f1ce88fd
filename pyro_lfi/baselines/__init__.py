"""Likelihood-based baselines on a tractable version of a simulator model: NUTS and amortized VI."""

from pyro_lfi.baselines.mcmc import mcmc
from pyro_lfi.baselines.tractable import TractableMessenger, TractableModel, tractable
from pyro_lfi.baselines.vi import AmortizedVI, amortized_vi

__all__ = ["AmortizedVI", "TractableMessenger", "TractableModel", "amortized_vi", "mcmc", "tractable"]
