"""Inference: the shared training loop, neural posterior estimation and its sequential forms."""

from .loop import TrainingConfig, TrainingHistory, train_loop
from .losses import npe_loss
from .npe import NPE
from .sequential.apt import atomic_apt_loss, mixture_apt_loss
from .sequential.proposals import ProposalError
from .sequential.rounds import SNPE, RoundRecord

__all__ = [
    "NPE",
    "SNPE",
    "ProposalError",
    "RoundRecord",
    "TrainingConfig",
    "TrainingHistory",
    "atomic_apt_loss",
    "mixture_apt_loss",
    "npe_loss",
    "train_loop",
]
