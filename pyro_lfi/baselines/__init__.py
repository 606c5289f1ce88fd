"""Likelihood-based baselines on a tractable version of a simulator model: NUTS and amortized VI."""

from pyro_lfi.baselines.mcmc import mcmc
from pyro_lfi.baselines.tractable import TractableMessenger, tractable

__all__ = ["TractableMessenger", "mcmc", "tractable"]
