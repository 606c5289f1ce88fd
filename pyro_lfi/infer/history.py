"""What a training run leaves behind: per-epoch losses, how it ended, what happened on the way."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainingEvent", "TrainingHistory"]


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
