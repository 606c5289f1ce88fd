"""pyro_lfi: likelihood-free (simulation-based) inference for Pyro models.

Write the simulator as the data site of an ordinary Pyro model (:class:`Simulator`), simulate
(:func:`simulate`), train an amortized neural posterior guide (:class:`NeuralPosterior`,
:class:`NPE`) and export the posterior to ArviZ (:func:`to_inference_data`).
"""

from . import baselines, diagnostics, errors, nn
from .arviz import to_inference_data
from .compare import Comparison, compare
from .errors import LFIError
from .guides import NeuralPosterior, NotFittedError
from .infer import NPE, SNPE, ProposalError, RoundRecord, TrainingConfig, TrainingHistory
from .mixtures import GaussianDivisionError
from .prior import Prior, UnsupportedPriorError
from .probe import ModelError, SimulatorNeverSucceeded
from .simulate import simulate
from .simulations import Simulations, Status
from .simulator import DeclaredShapeError, Simulator, SimulatorLikelihoodError, SimulatorShapeError
from .sites import ObservationError, SiteError
from .store import CampaignMismatchError, StoreInUseError

__version__ = "0.1.0"

__all__ = [
    "NPE",
    "SNPE",
    "CampaignMismatchError",
    "Comparison",
    "DeclaredShapeError",
    "GaussianDivisionError",
    "LFIError",
    "ModelError",
    "NeuralPosterior",
    "NotFittedError",
    "ObservationError",
    "Prior",
    "ProposalError",
    "RoundRecord",
    "Simulations",
    "Simulator",
    "SimulatorLikelihoodError",
    "SimulatorNeverSucceeded",
    "SimulatorShapeError",
    "SiteError",
    "Status",
    "StoreInUseError",
    "TrainingConfig",
    "TrainingHistory",
    "UnsupportedPriorError",
    "baselines",
    "compare",
    "diagnostics",
    "errors",
    "nn",
    "simulate",
    "to_inference_data",
]
