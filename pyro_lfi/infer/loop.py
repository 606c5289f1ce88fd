"""The one training loop shared by every estimator: mini-batches, a validation split, early
stopping on the validation loss with the best checkpoint restored, gradient clipping, a
progress bar and a loss history; it survives non-finite losses and Ctrl-C."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["MovingAverage", "TrainingConfig", "TrainingEvent", "TrainingHistory", "train_loop"]


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
    :ivar seed: seed of the split, the batch order and the networks' initial weights (``None``:
        from torch's global RNG).
    :ivar progress: show a progress bar.
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

    def __post_init__(self):
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


def train_loop(
    module: nn.Module,
    loss: Callable[..., torch.Tensor],
    data: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    history: TrainingHistory | None = None,
) -> TrainingHistory:
    """Minimize ``loss(*batch)`` over rows of ``data`` (tensors sharing their first dim).

    The module's parameters are restored to those of the epoch with the lowest validation loss
    (the averaged ones with ``config.ema``). A non-finite batch loss, gradient norm or validation
    loss skips the step and restores the best weights so far (the initial ones before the first
    validation) with a fresh optimizer state and a lower learning rate; after
    ``config.max_recoveries`` of those, training stops with a warning. On KeyboardInterrupt the
    best weights are restored, the module is put in eval mode, ``history.interrupted`` is set and
    the interrupt is raised again.

    :param history: filled in place if given (so that a caller keeps it when Ctrl-C propagates).
    """
    history = TrainingHistory() if history is None else history
    n = len(data[0])
    generator = torch.Generator()
    generator.manual_seed(
        config.seed if config.seed is not None else int(torch.randint(2**62, ()).item())
    )
    order = torch.randperm(n, generator=generator)
    num_val = max(1, int(round(config.validation_fraction * n))) if config.validation_fraction > 0 else 0
    if n - num_val < 1:
        raise ValueError(f"{n} rows are too few to train with a validation fraction of {config.validation_fraction}")
    val_rows, train_rows = order[:num_val], order[num_val:]
    train_data = [d[train_rows] for d in data]
    val_data = [d[val_rows] for d in data]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batch_size = config.batch_size or min(512, max(64, len(train_rows) // 16))
    max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else math.inf

    scheduler = None
    if config.lr_decay < 1:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay, patience=config.lr_patience, threshold=0.0
        )
    averaged = MovingAverage(module, config.ema) if config.ema else None
    guard = _Recovery(module, optimizer, averaged, config, history)
    start = time.perf_counter()
    bar = tqdm(range(config.max_epochs), desc="train", unit="epoch", disable=not config.progress)
    epoch = 0
    try:
        for epoch in bar:
            module.train()
            total, count = 0.0, 0
            for rows in torch.randperm(len(train_rows), generator=generator).split(batch_size):
                batch_loss = loss(*(d[rows] for d in train_data))
                value = batch_loss.item()
                if not math.isfinite(value):
                    guard.recover(epoch, "nonfinite_loss", f"batch loss {value}")
                    continue
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                norm = float(nn.utils.clip_grad_norm_(params, max_norm))
                if not math.isfinite(norm):
                    guard.recover(epoch, "nonfinite_gradient", f"gradient norm {norm}")
                    continue
                optimizer.step()
                if averaged is not None:
                    averaged.update()
                total += value * len(rows)
                count += len(rows)
            history.train_loss.append(total / count if count else math.nan)
            with averaged.applied() if averaged is not None else contextlib.nullcontext():
                val = _evaluate(module, loss, val_data) if num_val else history.train_loss[-1]
                if math.isfinite(val) and val < history.best_validation_loss:
                    history.best_validation_loss, history.best_epoch = val, epoch
                    guard.best_state = copy.deepcopy(module.state_dict())
            history.validation_loss.append(val)
            if not math.isfinite(val):
                guard.recover(epoch, "nonfinite_validation", f"validation loss {val}")
            elif scheduler is not None:
                scheduler.step(val)
            bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
            if epoch - history.best_epoch >= config.stop_after_epochs:
                history.converged = True
                break
    except _GaveUp:
        pass
    except KeyboardInterrupt:
        history.interrupted = True
        history.events.append(TrainingEvent(epoch, "interrupted", f"interrupted; {guard.restored_description()}"))
        raise
    finally:
        bar.close()
        guard.restore_best()
        module.eval()
        history.seconds = time.perf_counter() - start
    return history


class _GaveUp(Exception):
    """Raised inside :func:`train_loop` to stop after too many non-finite values."""


class _Recovery:
    """What :func:`train_loop` does when a loss or gradient is not finite: restore the best
    weights so far, reset the optimizer's state and the moving average to them, and lower the
    learning rate; give up (raise :class:`_GaveUp`) once that happened too often."""

    def __init__(self, module, optimizer, averaged, config: TrainingConfig, history: TrainingHistory):
        self.module, self.optimizer, self.averaged = module, optimizer, averaged
        self.config, self.history = config, history
        self.initial_state = copy.deepcopy(module.state_dict())
        self.best_state: dict | None = None
        self.factor = config.lr_decay if config.lr_decay < 1 else 0.5

    def restored_description(self) -> str:
        if self.best_state is None:
            return "the initial weights are restored (no epoch was validated)"
        return (
            f"the weights of epoch {self.history.best_epoch} (validation loss "
            f"{self.history.best_validation_loss:.4g}) are restored"
        )

    def restore_best(self) -> None:
        self.module.load_state_dict(self.best_state if self.best_state is not None else self.initial_state)

    def recover(self, epoch: int, kind: str, what: str) -> None:
        history = self.history
        if kind != "nonfinite_validation":
            history.skipped_steps += 1
        if history.recoveries >= self.config.max_recoveries:
            history.diverged = True
            history.events.append(TrainingEvent(epoch, kind, what))
            detail = (
                f"stopped after {history.recoveries + 1} non-finite losses or gradients; "
                f"{self.restored_description()}"
            )
            history.events.append(TrainingEvent(epoch, "gave_up", detail))
            warnings.warn(
                f"training {detail}. The loss kept diverging: lower learning_rate, set clip_grad_norm, "
                "or look for extreme values in the simulations",
                RuntimeWarning,
                stacklevel=4,
            )
            raise _GaveUp
        self.restore_best()
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] *= self.factor
        if self.averaged is not None:
            self.averaged.reset()
        history.recoveries += 1
        lr = self.optimizer.param_groups[0]["lr"]
        skipped = "" if kind == "nonfinite_validation" else "step skipped, "
        detail = f"{what}; {skipped}{self.restored_description()}, learning rate now {lr:.3g}"
        history.events.append(TrainingEvent(epoch, kind, detail))
        self.module.train()


class MovingAverage:
    r"""Exponential moving average of a module's parameters, :math:`\bar w \leftarrow \beta \bar w
    + (1 - \beta) w`, starting from the weights at the first :meth:`update`.

    The same average as :class:`torch.optim.swa_utils.AveragedModel` with
    :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`, in one fused operation per step rather
    than a copy of the module and per-parameter bookkeeping (a twentieth of a small network's
    training step).
    """

    def __init__(self, module: nn.Module, decay: float):
        self.parameters = list(module.parameters())
        self.average = [p.detach().clone() for p in self.parameters]
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        if not self.parameters:
            return
        if self.updates:
            torch._foreach_lerp_(self.average, self.parameters, 1 - self.decay)
        else:
            torch._foreach_copy_(self.average, self.parameters)
        self.updates += 1

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average at the module's current weights."""
        if self.parameters:
            torch._foreach_copy_(self.average, self.parameters)
        self.updates = 1

    @contextlib.contextmanager
    def applied(self):
        """Within the block the module holds the averaged weights; then its own again."""
        if not self.updates:
            yield
            return
        with torch.no_grad():
            own = [p.detach().clone() for p in self.parameters]
            torch._foreach_copy_(self.parameters, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, own)


@torch.no_grad()
def _evaluate(module: nn.Module, loss: Callable, data: Sequence[torch.Tensor], chunk: int = 4096) -> float:
    module.eval()
    n = len(data[0])
    total = sum(loss(*(d[i : i + chunk] for d in data)).item() * min(chunk, n - i) for i in range(0, n, chunk))
    return total / n
