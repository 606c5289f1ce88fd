"""pyro_lfi: likelihood-free (simulation-based) inference for Pyro models.

Write the simulator as the data site of an ordinary Pyro model (:class:`Simulator`), simulate
(:func:`simulate`), train an amortized neural posterior guide (:class:`NeuralPosterior`,
:class:`NPE`) and export the posterior to ArviZ (:func:`to_inference_data`, :func:`from_mcmc`).
"""

import importlib
import sys

from . import analysis, baselines, diagnostics, errors, guide, infer, likelihood, model, nn, simulation
from .arviz import from_mcmc, to_inference_data
from .diagnostics.compare import Comparison, compare
from .errors import LFIError
from .guide.posterior import NeuralPosterior, NotFittedError
from .infer import (
    NLE,
    NPE,
    NRE,
    SNLE,
    SNPE,
    SNRE,
    ImportanceSamples,
    PosteriorSamples,
    ProposalError,
    RoundRecord,
    TrainingConfig,
    TrainingHistory,
    importance_posterior,
    posterior_chains,
    sample_posterior,
)
from .infer.sequential.mixtures import GaussianDivisionError
from .infer.sequential.restriction import Restriction
from .likelihood import NeuralLikelihood, NeuralRatio, surrogate
from .model.prior import Prior, UnsupportedPriorError
from .model.simulator import DeclaredShapeError, Simulator, SimulatorLikelihoodError, SimulatorShapeError
from .model.sites import ObservationError, SiteError
from .simulation.campaign import simulate
from .simulation.options import SimulationOptions
from .simulation.simulations import Simulations, Status
from .simulation.store import CampaignMismatchError, StoreInUseError
from .simulation.trial import ModelError, SimulatorNeverSucceeded

__version__ = "0.2.0"  #: the one place the version is written (pyproject.toml reads it)

#: Modules of the flat layout before 0.2 and where they live now: importable under the old path
#: too (the same module object), so user code and files pickled by older versions keep working.
MOVED_MODULES = {
    "simulator": "model.simulator",
    "sites": "model.sites",
    "prior": "model.prior",
    "bijections": "model.bijections",
    "observations": "model.observations",
    "simulations": "simulation.simulations",
    "simulate": "simulation.campaign",
    "batch_plan": "simulation.plan",
    "executors": "simulation.executors",
    "deadline": "simulation.deadline",
    "store": "simulation.store",
    "fingerprint": "simulation.fingerprint",
    "probe": "simulation.trial",
    "guides": "guide.posterior",
    "persistence": "guide.persistence",
    "compare": "diagnostics.compare",
    "mixtures": "infer.sequential.mixtures",
    "infer.snpe": "infer.sequential.rounds",
    "infer.proposals": "infer.sequential.proposals",
}
for _old, _new in MOVED_MODULES.items():
    _module = sys.modules[f"{__name__}.{_old}"] = importlib.import_module(f"{__name__}.{_new}")
    _parent, _, _name = f"{__name__}.{_old}".rpartition(".")
    if not hasattr(sys.modules[_parent], _name):  # pyro_lfi.simulate and .compare stay the functions
        setattr(sys.modules[_parent], _name, _module)

__all__ = [
    "NLE",
    "NPE",
    "NRE",
    "SNLE",
    "SNPE",
    "SNRE",
    "CampaignMismatchError",
    "Comparison",
    "DeclaredShapeError",
    "GaussianDivisionError",
    "ImportanceSamples",
    "LFIError",
    "ModelError",
    "NeuralLikelihood",
    "NeuralPosterior",
    "NeuralRatio",
    "NotFittedError",
    "ObservationError",
    "PosteriorSamples",
    "Prior",
    "ProposalError",
    "Restriction",
    "RoundRecord",
    "SimulationOptions",
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
    "analysis",
    "baselines",
    "compare",
    "diagnostics",
    "errors",
    "from_mcmc",
    "guide",
    "importance_posterior",
    "infer",
    "likelihood",
    "model",
    "nn",
    "posterior_chains",
    "sample_posterior",
    "simulate",
    "simulation",
    "surrogate",
    "to_inference_data",
]
