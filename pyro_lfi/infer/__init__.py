"""Inference: the shared training loop and neural posterior estimation."""

from .loop import TrainingConfig, TrainingHistory, train_loop
from .losses import npe_loss
from .npe import NPE

__all__ = ["NPE", "TrainingConfig", "TrainingHistory", "npe_loss", "train_loop"]
