"""Simulation campaigns: the model run forward in seeded batches, here or on workers, into
columnar :class:`Simulations`, optionally through a resumable store. Only :func:`simulate` and
:class:`Simulations` are public; the batch plan, executors, deadlines, trial runs and the store
are parts of a campaign."""

from .campaign import simulate
from .options import SimulationOptions
from .simulations import Simulations, Status
from .store import CampaignMismatchError, StoreInUseError

__all__ = ["CampaignMismatchError", "SimulationOptions", "Simulations", "Status", "StoreInUseError", "simulate"]
