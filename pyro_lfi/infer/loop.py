"""The one training loop shared by every estimator: mini-batches, a validation split, early
stopping on the validation loss with the best checkpoint restored, gradient clipping, a
progress bar and a loss history; it survives non-finite losses and Ctrl-C."""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..progress import progress_bar
from ..seeding import derived_seed, seeded
from .config import TrainingConfig
from .history import EpochReport, TrainingEvent, TrainingHistory

__all__ = ["MovingAverage", "TrainingConfig", "TrainingEvent", "TrainingHistory", "train_loop"]


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
    generator = torch.Generator()
    generator.manual_seed(config.seed if config.seed is not None else int(torch.randint(2**62, ()).item()))
    train_data, val_data = _split(data, config.validation_fraction, generator)
    trainer = _Trainer(module, loss, optimizer, config, history)
    batch_size = config.batch_size or min(512, max(64, len(train_data[0]) // 16))
    start = time.perf_counter()
    bar = progress_bar(range(config.max_epochs), desc="train", unit="epoch", disable=not config.progress)
    epoch = 0
    # the loss's own draws (atoms, diffusion times, noise) come from a stream of the seed: a
    # seeded run repeats exactly, and the caller's global random state is left as it was
    with seeded(None if config.seed is None else derived_seed(config.seed, LOSS_STREAM)):
        try:
            for epoch in bar:
                order = torch.randperm(len(train_data[0]), generator=generator)
                history.train_loss.append(trainer.train_epoch(epoch, [d[order] for d in train_data], batch_size))
                val = trainer.validate(epoch, val_data)
                bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
                if trainer.callbacks_stop(epoch, val, time.perf_counter() - start):
                    history.events.append(TrainingEvent(epoch, "stopped", "a callback stopped training"))
                    break
                if epoch - history.best_epoch >= config.stop_after_epochs:
                    history.converged = True
                    break
        except _GaveUp:
            pass
        except KeyboardInterrupt:
            history.interrupted = True
            restored = trainer.guard.restored_description()
            history.events.append(TrainingEvent(epoch, "interrupted", f"interrupted; {restored}"))
            raise
        finally:
            bar.close()
            trainer.guard.restore_best()
            module.eval()
            history.seconds = time.perf_counter() - start
    return history


def _split(
    data: Sequence[torch.Tensor], validation_fraction: float, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(train, validation)`` rows of ``data``, a random ``validation_fraction`` (one row at
    least, if positive) held out."""
    n = len(data[0])
    order = torch.randperm(n, generator=generator)
    num_val = max(1, int(round(validation_fraction * n))) if validation_fraction > 0 else 0
    if n - num_val < 1:
        raise ValueError(f"{n} rows are too few to train with a validation fraction of {validation_fraction}")
    return [d[order[num_val:]] for d in data], [d[order[:num_val]] for d in data]


class _Trainer:
    """The steps of :func:`train_loop`: an epoch of clipped gradient steps that skips
    non-finite values, and a validation that keeps the best weights and steps the schedule."""

    def __init__(self, module: nn.Module, loss: Callable, optimizer, config: TrainingConfig, history: TrainingHistory):
        self.module, self.loss, self.optimizer, self.history = module, loss, optimizer, history
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else math.inf
        self.scheduler = None
        if config.lr_decay < 1:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=config.lr_decay, patience=config.lr_patience, threshold=0.0
            )
        self.averaged = MovingAverage(module, config.ema) if config.ema else None
        self.guard = _Recovery(module, optimizer, self.averaged, config, history)
        self.callbacks = config.callbacks

    def callbacks_stop(self, epoch: int, val: float, seconds: float) -> bool:
        """Report the epoch to every callback; whether one asked to stop (returned true)."""
        if not self.callbacks:
            return False
        history = self.history
        report = EpochReport(epoch, history.train_loss[-1], val, history.best_validation_loss,
                             self.optimizer.param_groups[0]["lr"], seconds)
        return any([bool(callback(report)) for callback in self.callbacks])  # every one sees it

    def train_epoch(self, epoch: int, data: Sequence[torch.Tensor], batch_size: int) -> float:
        """One pass over ``data`` (shuffled) in mini-batches; the mean loss of the steps taken."""
        self.module.train()
        total, count = 0.0, 0
        for rows in batch_slices(len(data[0]), batch_size):
            batch = [d[rows] for d in data]
            batch_loss = self.loss(*batch)
            value = batch_loss.item()
            if not math.isfinite(value):
                self.guard.recover(epoch, "nonfinite_loss", f"batch loss {value}")
                continue
            self.optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            norm = float(nn.utils.clip_grad_norm_(self.params, self.max_norm))
            if not math.isfinite(norm):
                self.guard.recover(epoch, "nonfinite_gradient", f"gradient norm {norm}")
                continue
            self.optimizer.step()
            if self.averaged is not None:
                self.averaged.update()
            total += value * len(batch[0])
            count += len(batch[0])
        return total / count if count else math.nan

    def validate(self, epoch: int, data: Sequence[torch.Tensor]) -> float:
        """The validation loss (the training loss without a validation set), with the averaged
        weights if any; keeps the best weights and steps the learning-rate schedule."""
        history = self.history
        with self.averaged.applied() if self.averaged is not None else contextlib.nullcontext():
            val = _evaluate(self.module, self.loss, data) if len(data[0]) else history.train_loss[-1]
            if math.isfinite(val) and val < history.best_validation_loss:
                history.best_validation_loss, history.best_epoch = val, epoch
                self.guard.best_state = copy.deepcopy(self.module.state_dict())
        history.validation_loss.append(val)
        if not math.isfinite(val):
            self.guard.recover(epoch, "nonfinite_validation", f"validation loss {val}")
        elif self.scheduler is not None:
            self.scheduler.step(val)
        return val


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


#: key of the stream (derived from ``TrainingConfig.seed``) that the loss's draws come from
LOSS_STREAM = 1

#: seed of the draws a loss makes while validating (the atoms of contrastive losses): the same
#: every epoch, so that the validation loss compares weights and not draws
VALIDATION_SEED = 20_240_511


@torch.no_grad()
def _evaluate(module: nn.Module, loss: Callable, data: Sequence[torch.Tensor], chunk: int = 4096) -> float:
    module.eval()
    n = len(data[0])
    with seeded(VALIDATION_SEED):
        total = sum(loss(*(d[rows] for d in data)).item() * (rows.stop - rows.start) for rows in batch_slices(n, chunk))
    return total / n


def batch_slices(n: int, size: int) -> list[slice]:
    """Consecutive slices of ``n`` rows, ``size`` each; a single remaining row joins the last
    full batch, so no batch is a lone row (contrastive losses such as APT's atoms and NRE's need
    other rows of the same batch)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(start, end) for start, end in zip(starts, [*starts[1:], n])]
