"""Reading a Pyro model: its simulators, its sites and their spaces, its prior."""

from .prior import Prior, UnsupportedPriorError
from .simulator import DeclaredShapeError, Simulator, SimulatorLikelihoodError, SimulatorShapeError
from .sites import LatentSite, ModelSites, ObservationError, SiteError

__all__ = [
    "DeclaredShapeError",
    "LatentSite",
    "ModelSites",
    "ObservationError",
    "Prior",
    "Simulator",
    "SimulatorLikelihoodError",
    "SimulatorShapeError",
    "SiteError",
    "UnsupportedPriorError",
]
