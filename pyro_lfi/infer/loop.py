"""The one training loop shared by every estimator: mini-batches, a validation split, early
stopping on the validation loss with the best checkpoint restored, gradient clipping, a
progress bar and a loss history."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["MovingAverage", "TrainingConfig", "TrainingHistory", "train_loop"]


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
    :ivar lr_patience: epochs without improvement before the learning rate decays.
    :ivar clip_grad_norm: clip the gradient's global norm to this (``None`` to disable).
    :ivar ema: decay :math:`\beta` of an exponential moving average of the weights,
        :math:`\bar w \leftarrow \beta \bar w + (1 - \beta) w` after every step; validation,
        early stopping and the restored checkpoint use :math:`\bar w`, which varies less than
        the weights of the last step. ``None`` (or 0): no averaging.
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
    seed: int | None = None
    progress: bool = True


@dataclass
class TrainingHistory:
    """Per-epoch mean losses and how training ended."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_validation_loss: float = float("inf")
    seconds: float = 0.0
    converged: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


def train_loop(
    module: nn.Module,
    loss: Callable[..., torch.Tensor],
    data: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
) -> TrainingHistory:
    """Minimize ``loss(*batch)`` over rows of ``data`` (tensors sharing their first dim).

    The module's parameters are restored to those of the epoch with the lowest validation loss.
    """
    if config.ema is not None and not 0 <= config.ema < 1:
        raise ValueError(f"ema is the decay of a moving average and must lie in [0, 1), got {config.ema}")
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

    scheduler = None
    if config.lr_decay < 1:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay, patience=config.lr_patience, threshold=0.0
        )
    averaged = MovingAverage(module, config.ema) if config.ema is not None else None
    history, best_state, start = TrainingHistory(), None, time.perf_counter()
    bar = tqdm(range(config.max_epochs), desc="train", unit="epoch", disable=not config.progress)
    for epoch in bar:
        module.train()
        total = 0.0
        for rows in torch.randperm(len(train_rows), generator=generator).split(batch_size):
            batch_loss = loss(*(d[rows] for d in train_data))
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
            optimizer.step()
            if averaged is not None:
                averaged.update()
            total += batch_loss.item() * len(rows)
        history.train_loss.append(total / len(train_rows))
        with averaged.applied() if averaged is not None else contextlib.nullcontext():
            val = _evaluate(module, loss, val_data) if num_val else history.train_loss[-1]
            if val < history.best_validation_loss:
                history.best_validation_loss, history.best_epoch = val, epoch
                best_state = copy.deepcopy(module.state_dict())
        history.validation_loss.append(val)
        if scheduler is not None:
            scheduler.step(val)
        bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
        if epoch - history.best_epoch >= config.stop_after_epochs:
            history.converged = True
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    history.seconds = time.perf_counter() - start
    return history


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
