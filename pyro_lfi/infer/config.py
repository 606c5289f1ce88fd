"""The options of the shared training loop, checked when they are set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .history import EpochReport

__all__ = ["TrainingConfig"]


@dataclass
class TrainingConfig:
    r"""Options of :func:`train_loop` (all estimators accept these as keyword arguments).

    :ivar batch_size: rows per gradient step; ``None`` picks a sixteenth of the training rows,
        between 64 and 512 (large batches cost little more per step than small ones on a CPU).
    :ivar learning_rate: step size of the optimizer.
    :ivar validation_fraction: share of rows held out for early stopping.
    :ivar stop_after_epochs: stop when the validation loss has not improved for this many epochs.
    :ivar max_epochs: hard limit on epochs.
    :ivar lr_decay: multiply the learning rate by this when the validation loss has not improved
        for ``lr_patience`` epochs (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`; 1 disables).
        A recovery from a non-finite loss multiplies it by this too (by 0.5 when it is 1).
    :ivar lr_patience: epochs without improvement before the learning rate decays.
    :ivar clip_grad_norm: clip the gradient's global norm to this (``None`` to disable).
    :ivar ema: decay :math:`\beta` of an exponential moving average of the weights,
        :math:`\bar w \leftarrow \beta \bar w + (1 - \beta) w` after every step; validation,
        early stopping and the restored checkpoint use :math:`\bar w`, which varies less than
        the weights of the last step. ``None`` (or 0): no averaging.
    :ivar max_recoveries: how many non-finite losses or gradients training recovers from (each
        time: skip the step, restore the best weights, reset the optimizer, lower the learning
        rate); at the next one it stops with the best weights and a warning.
    :ivar seed: seed of the split, the batch order, the loss's own random draws (contrastive
        atoms, diffusion times and noise; drawn from torch's global RNG inside training, which
        is restored afterwards) and the networks' initial weights (``None``: from torch's
        global RNG).
    :ivar progress: show a progress bar.
    :ivar callbacks: called after every epoch with an :class:`~pyro_lfi.infer.history.EpochReport`;
        one that returns a true value stops training (the best weights are restored as always).
        Ready ones: :class:`~pyro_lfi.infer.callbacks.TensorBoardLogger`,
        :class:`~pyro_lfi.infer.callbacks.LogEpochs`.
    """

    batch_size: int | None = None
    learning_rate: float = 2e-3
    validation_fraction: float = 0.1
    stop_after_epochs: int = 30
    max_epochs: int = 1000
    lr_decay: float = 0.5
    lr_patience: int = 10
    clip_grad_norm: float | None = 5.0
    ema: float | None = 0.95
    max_recoveries: int = 3
    seed: int | None = None
    progress: bool = True
    callbacks: tuple[Callable[[EpochReport], bool | None], ...] = ()

    def __post_init__(self):
        self.callbacks = tuple(self.callbacks) if isinstance(self.callbacks, list | tuple) else (self.callbacks,)
        if not all(callable(c) for c in self.callbacks):
            raise TypeError(f"training option callbacks must be callables, got {self.callbacks!r}")
        checks = {
            "batch_size": self.batch_size is None or self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "validation_fraction": 0 <= self.validation_fraction < 1,
            "stop_after_epochs": self.stop_after_epochs >= 1,
            "max_epochs": self.max_epochs >= 1,
            "lr_decay": 0 < self.lr_decay <= 1,
            "lr_patience": self.lr_patience >= 0,
            "clip_grad_norm": self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "ema": self.ema is None or 0 <= self.ema < 1,
            "max_recoveries": self.max_recoveries >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise ValueError(f"training option {name}={getattr(self, name)!r} is out of range: {_RANGES[name]}")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def updated(self, options: Mapping[str, object], where: str) -> TrainingConfig:
        """A copy with ``options`` replaced; unknown names raise a :class:`TypeError` that lists
        the valid ones (``where`` names the call that received them)."""
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            raise TypeError(
                f"{where} got unknown training option(s) {unknown}; the options of "
                f"pyro_lfi.TrainingConfig are {list(self.option_names())}"
            )
        return dataclasses.replace(self, **options)


_RANGES = {
    "batch_size": "a positive int, or None for an automatic size",
    "learning_rate": "it must be positive",
    "validation_fraction": "it is a share in [0, 1)",
    "stop_after_epochs": "it must be at least 1",
    "max_epochs": "it must be at least 1",
    "lr_decay": "it is a factor in (0, 1]; 1 disables the decay",
    "lr_patience": "it must be at least 0",
    "clip_grad_norm": "a positive norm, or None to disable clipping",
    "ema": "it is the decay of a moving average and must lie in [0, 1), or be None",
    "max_recoveries": "it must be at least 0",
}
