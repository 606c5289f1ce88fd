"""Ready training callbacks (``TrainingConfig.callbacks``): each is called after every epoch with
an :class:`~pyro_lfi.infer.history.EpochReport`, and may return ``True`` to stop training."""

from __future__ import annotations

import logging
import os

from .history import EpochReport

__all__ = ["LogEpochs", "TensorBoardLogger"]


class LogEpochs:
    """Log one line every ``every`` epochs to ``logger`` (``logging.getLogger("pyro_lfi")`` by
    default), at ``level``: for batch jobs that collect logs rather than progress bars."""

    def __init__(self, every: int = 10, logger: logging.Logger | None = None, level: int = logging.INFO):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.every, self.level = every, level
        self.logger = logger or logging.getLogger("pyro_lfi")

    def __call__(self, report: EpochReport) -> None:
        if report.epoch % self.every == 0:
            self.logger.log(
                self.level, "epoch %d: train %.4f, validation %.4f (best %.4f), lr %.3g, %.1f s",
                report.epoch, report.train_loss, report.validation_loss, report.best_validation_loss,
                report.learning_rate, report.seconds,
            )


class TensorBoardLogger:
    """Write the losses and the learning rate of every epoch to TensorBoard under ``log_dir``
    (``loss/train``, ``loss/validation``, ``learning_rate``). Needs the optional ``tensorboard``
    package (``pip install tensorboard``); several trainings with one logger continue its
    step count."""

    def __init__(self, log_dir: str | os.PathLike | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install tensorboard"
            ) from error
        self.writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
        self.step = 0

    def __call__(self, report: EpochReport) -> None:
        self.writer.add_scalar("loss/train", report.train_loss, self.step)
        self.writer.add_scalar("loss/validation", report.validation_loss, self.step)
        self.writer.add_scalar("learning_rate", report.learning_rate, self.step)
        self.writer.flush()
        self.step += 1
