"""Inference: the shared training loop, neural posterior estimation and its sequential forms, and
posterior sampling of tractable models (NUTS chains started across the modes, or adaptive
importance sampling)."""

from .callbacks import LogEpochs, TensorBoardLogger
from .chains import PosteriorSamples
from .history import EpochReport
from .importance import ImportanceSamples, importance_posterior
from .loop import TrainingConfig, TrainingHistory, train_loop
from .losses import npe_loss
from .nle import NLE
from .npe import NPE
from .nre import NRE
from .posterior_sampling import posterior_chains, sample_posterior
from .sequential.apt import atomic_apt_loss, mixture_apt_loss
from .sequential.proposals import ProposalError
from .sequential.rounds import SNPE, RoundRecord
from .sequential.site_rounds import SNLE, SNRE, SiteRoundRecord

__all__ = [
    "NLE",
    "NPE",
    "NRE",
    "SNLE",
    "SNPE",
    "SNRE",
    "EpochReport",
    "ImportanceSamples",
    "LogEpochs",
    "PosteriorSamples",
    "ProposalError",
    "RoundRecord",
    "SiteRoundRecord",
    "TensorBoardLogger",
    "TrainingConfig",
    "TrainingHistory",
    "atomic_apt_loss",
    "importance_posterior",
    "mixture_apt_loss",
    "npe_loss",
    "posterior_chains",
    "sample_posterior",
    "train_loop",
]
