"""What a training run leaves behind: per-epoch losses, how it ended, what happened on the way."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EpochReport", "TrainingEvent", "TrainingHistory"]


@dataclass(frozen=True)
class TrainingEvent:
    """Something that happened during training besides ordinary steps.

    :ivar epoch: the epoch (0-based) it happened in.
    :ivar kind: ``"nonfinite_loss"``, ``"nonfinite_gradient"``, ``"nonfinite_validation"``,
        ``"gave_up"`` (too many of those: training stopped) or ``"interrupted"`` (Ctrl-C).
    :ivar detail: what was done about it, in words.
    """

    epoch: int
    kind: str
    detail: str


@dataclass(frozen=True)
class EpochReport:
    """What a training callback receives after each epoch (see ``TrainingConfig.callbacks``).

    :ivar epoch: the epoch just finished (0-based).
    :ivar train_loss: its mean training loss.
    :ivar validation_loss: its validation loss.
    :ivar best_validation_loss: the lowest so far (the weights that will be restored).
    :ivar learning_rate: the first parameter group's step size for the next epoch.
    :ivar seconds: time since training started.
    """

    epoch: int
    train_loss: float
    validation_loss: float
    best_validation_loss: float
    learning_rate: float
    seconds: float


@dataclass
class TrainingHistory:
    """Per-epoch mean losses and how training ended.

    ``train_loss`` averages the steps that were taken (a skipped non-finite step is left out;
    NaN for an epoch whose every step was skipped); ``validation_loss`` holds what was measured,
    NaN or inf included (such an epoch is never the best).

    :ivar events: non-finite losses recovered from, giving up, an interruption (:class:`TrainingEvent`).
    :ivar skipped_steps: gradient steps skipped for a non-finite loss or gradient.
    :ivar recoveries: times the best weights were restored after something non-finite.
    :ivar diverged: training stopped because non-finite values kept coming.
    :ivar interrupted: training was interrupted (KeyboardInterrupt); the best weights are restored.
    """

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_validation_loss: float = float("inf")
    seconds: float = 0.0
    converged: bool = False
    events: list[TrainingEvent] = field(default_factory=list)
    skipped_steps: int = 0
    recoveries: int = 0
    diverged: bool = False
    interrupted: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def plot(self, ax=None):
        """Training and validation loss per epoch, the restored epoch marked, and the epochs of
        events (non-finite values, interruption) as dotted lines; returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
        epochs = range(1, self.epochs + 1)
        ax.plot(epochs, self.train_loss, label="training")
        ax.plot(epochs, self.validation_loss, label="validation")
        if self.best_epoch >= 0:
            ax.axvline(self.best_epoch + 1, color="0.5", label=f"restored (epoch {self.best_epoch + 1})")
        for event in self.events:
            ax.axvline(event.epoch + 1, color="C3", linestyle=":", linewidth=1)
        ax.set(xlabel="epoch", ylabel="loss")
        ax.legend(frameon=False)
        return ax
