"""Inference: the shared training loop, neural posterior estimation and its sequential forms."""

from .loop import TrainingConfig, TrainingHistory, train_loop
from .losses import atomic_apt_loss, mixture_apt_loss, npe_loss
from .npe import NPE
from .proposals import ProposalError
from .snpe import SNPE, RoundRecord

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
