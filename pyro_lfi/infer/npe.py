"""Neural posterior estimation: the inference class used in place of Pyro's ``SVI``."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable

import pyro.optim
import torch

from ..errors import shortened
from ..guide.posterior import NeuralPosterior
from ..model.checks import check_simulated
from ..options import split_options
from ..seeding import seeded
from ..simulation.campaign import simulate
from ..simulation.options import SimulationOptions
from ..simulation.simulations import Simulations
from .loop import TrainingConfig, TrainingHistory, train_loop
from .losses import npe_loss

__all__ = ["NPE"]

OptimSpec = pyro.optim.PyroOptim | Callable[..., torch.optim.Optimizer] | None


def make_optimizer(optim: OptimSpec, params, learning_rate: float | None) -> torch.optim.Optimizer:
    """A torch optimizer from ``None`` (Adam), a :class:`pyro.optim.PyroOptim` such as
    ``pyro.optim.Adam({"lr": 1e-3})``, or a callable ``params -> torch.optim.Optimizer``.

    :param learning_rate: the step size; ``None`` keeps a custom optimizer's own (Adam then gets
        :class:`~pyro_lfi.infer.loop.TrainingConfig`'s default).
    """
    if optim is None:
        params = list(params)
        # the fused step (one kernel for all parameters) takes a third of the foreach step's time on a CPU
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        lr = learning_rate if learning_rate is not None else TrainingConfig.learning_rate
        return torch.optim.Adam(params, lr=lr, fused=fused, foreach=None if fused else True)
    if isinstance(optim, pyro.optim.PyroOptim):
        args = optim.pt_optim_args
        optimizer = optim.pt_optim_constructor(params, **(args() if callable(args) else args))
    else:
        optimizer = optim(params)
    if learning_rate is not None:
        set_learning_rate(optimizer, learning_rate)
    return optimizer


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Set the step size of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


class NPE:
    r"""Neural posterior estimation (Papamakarios & Murray 2016; Greenberg et al. 2019):
    fit the guide to simulations by minimizing :func:`~pyro_lfi.infer.losses.npe_loss`.

    Like :class:`pyro.infer.SVI` it takes the model and the guide, and offers :meth:`step`,
    :meth:`evaluate_loss` and :meth:`loss`; :meth:`train` runs the shared training loop and
    :meth:`run` simulates first.

    :param model: the Pyro model.
    :param guide: a :class:`~pyro_lfi.NeuralPosterior` of that model.
    :param optim: ``None`` (Adam), a :class:`pyro.optim.PyroOptim`, or a callable making a
        torch optimizer from parameters.
    :param config: defaults for :class:`~pyro_lfi.infer.loop.TrainingConfig` (``batch_size``,
        ``learning_rate``, ``stop_after_epochs``, ...), overridable per :meth:`train` call.
    """

    def __init__(self, model, guide: NeuralPosterior, optim: OptimSpec = None, **config):
        if not isinstance(guide, NeuralPosterior):
            raise TypeError(f"NPE needs a pyro_lfi.NeuralPosterior guide, got {type(guide).__name__}")
        self.model = model
        self.guide = guide
        self.optim = optim
        self.config = TrainingConfig().updated(config, "NPE(...)")
        self._given_config = dict(config)  # over the estimator's training defaults, under train(...)'s
        #: whether NPE(learning_rate=...) was given: a custom ``optim`` otherwise keeps its own
        self._learning_rate_given = "learning_rate" in config
        self.optimizer: torch.optim.Optimizer | None = None
        self._initial_learning_rates: list[float] = []
        self.history: list[TrainingHistory] = []

    # -- data -----------------------------------------------------------------------------------

    def tensors(self, simulations: Simulations, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid rows as ``(x, z)``: observations and unconstrained parameters; builds the
        guide from them if needed (``args``/``kwargs`` are the model's arguments)."""
        x, z, _ = self._tensors(simulations, args, kwargs, self.config.seed)
        return x, z

    def _tensors(self, simulations: Simulations, args, kwargs, seed: int | None):
        _check_simulations(simulations)
        if (simulations.round > 0).any():
            raise ValueError(
                "these simulations include sequential rounds (round > 0), whose parameters came from a "
                "proposal rather than the prior: the NPE loss would fit the proposal's posterior. "
                "Train them with pyro_lfi.SNPE, which uses the loss that is correct for each round"
            )
        if not self.guide.is_built:
            with seeded(seed):  # the networks' initial weights
                self.guide.build(simulations, *args, **kwargs)
        return training_tensors(self.guide, simulations)

    def _optimizer(self, learning_rate: float | None = None) -> torch.optim.Optimizer:
        """The optimizer (made on first use, kept across calls), with its step size set to
        ``learning_rate``, or else to the one it started with."""
        if self.optimizer is None:
            lr = self.config.learning_rate if self.optim is None or self._learning_rate_given else None
            self.optimizer = make_optimizer(self.optim, self.guide.parameters(), lr)
            self._initial_learning_rates = [group["lr"] for group in self.optimizer.param_groups]
        if learning_rate is not None:
            set_learning_rate(self.optimizer, learning_rate)
        else:  # undo a previous training's decay
            for group, lr in zip(self.optimizer.param_groups, self._initial_learning_rates):
                group["lr"] = lr
        return self.optimizer

    # -- SVI-like interface ---------------------------------------------------------------------

    def loss(self, batch: Simulations) -> torch.Tensor:
        """The NPE loss on the valid rows of ``batch`` (differentiable)."""
        x, z = self.tensors(batch)
        device = _device_of(self.guide)
        return npe_loss(self.guide, x.to(device), z.to(device))

    @torch.no_grad()
    def evaluate_loss(self, batch: Simulations) -> float:
        """The loss on ``batch`` without a gradient step, like :meth:`pyro.infer.SVI.evaluate_loss`."""
        return self.loss(batch).item()

    def step(self, batch: Simulations) -> float:
        """One gradient step on ``batch``; returns the loss before the step."""
        loss = self.loss(batch)
        optimizer = self.optimizer if self.optimizer is not None else self._optimizer()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    # -- training -------------------------------------------------------------------------------

    def train(
        self,
        simulations: Simulations,
        *,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        device: str | torch.device | None = None,
        **config,
    ) -> TrainingHistory:
        """Fit the guide to the valid rows of ``simulations`` with the shared training loop.

        :param model_args: the model's positional arguments (to read its sites).
        :param model_kwargs: the model's keyword arguments.
        :param device: where to train (e.g. ``"cuda"``); the CPU by default.
        :param config: overrides of the :class:`~pyro_lfi.infer.loop.TrainingConfig` defaults for
            this call, which are ``NPE(**config)``'s over the estimator's ``training_defaults``
            (flow and score matching train in smaller batches, with more patience). ``seed`` fixes
            the split, the batch order, the loss's own random draws and, if the guide is not
            built yet, its initial weights; ``learning_rate`` sets the optimizer's step size,
            which a custom ``optim`` otherwise keeps.
        :returns: the :class:`~pyro_lfi.infer.loop.TrainingHistory` (also appended to
            :attr:`history`, even when Ctrl-C interrupts training: the best weights so far are
            restored, ``history.interrupted`` is set and the KeyboardInterrupt propagates).
        """
        seed = self.config.updated(config, "NPE.train(...)").seed
        x, z, _ = self._tensors(simulations, model_args, model_kwargs or {}, seed)
        options = self._training_options(config)
        if device is not None:
            self.guide.to(device)
            self.optimizer = None  # parameters moved: rebuild the optimizer's state
        device = _device_of(self.guide)
        given = self._learning_rate_given or "learning_rate" in config
        optimizer = self._optimizer(options.learning_rate if self.optim is None or given else None)
        history = TrainingHistory()
        try:
            train_loop(
                self.guide,
                lambda xb, zb: npe_loss(self.guide, xb, zb),
                (x.to(device), z.to(device)),
                optimizer,
                options,
                history,
            )
        finally:
            if history.epochs or history.events:  # kept when Ctrl-C (or an error) ends training
                self.history.append(history)
        return history

    def _training_options(self, config: dict) -> TrainingConfig:
        """The options of one :meth:`train` call on the built guide: ``config`` over
        ``NPE(**config)`` over the estimator's ``training_defaults`` over the general ones."""
        defaults = getattr(self.guide.estimator, "training_defaults", {})
        return TrainingConfig().updated({**defaults, **self._given_config, **config}, "NPE.train(...)")

    def run(
        self,
        num_simulations: int,
        *args,
        seed: int | None = None,
        options: SimulationOptions | None = None,
        model_kwargs: dict | None = None,
        **kwargs,
    ) -> Simulations:
        """Simulate ``num_simulations`` rows of ``model(*args, **kwargs)`` and train on them.

        ``seed`` and ``options`` (or its fields as keywords: ``batch_size``, ``executor``,
        ``workers``, ``store``, ``timeout``, ``isolate``, ``force``, ``progress``) go to
        :func:`~pyro_lfi.simulate` (parallel workers, a resumable campaign on disk, a time limit
        per simulation, a process per batch); the progress bar follows this NPE's ``progress``.

        :returns: the simulations (so that nothing simulated is lost).
        """
        default = SimulationOptions(progress=self.config.progress)
        options, kwargs = split_options(SimulationOptions, options or default, kwargs, model_kwargs)
        sims = simulate(self.model, num_simulations, *args, seed=seed, options=options, model_kwargs=kwargs)
        self.train(sims, model_args=args, model_kwargs=kwargs)
        return sims


def _check_simulations(simulations) -> None:
    if not isinstance(simulations, Simulations):
        raise TypeError(f"expected pyro_lfi.Simulations, got {type(simulations).__name__}")


#: Fewer usable rows than this, or a smaller share of all rows, gets a warning before training.
MIN_TRAINING_ROWS = 100
MIN_USABLE_SHARE = 0.1


def training_tensors(guide: NeuralPosterior, simulations: Simulations):
    """``(x, z, kept)``: observations and unconstrained parameters of the rows the guide can
    train on (:meth:`~pyro_lfi.NeuralPosterior.usable`) that have finite ``z``, and the mask of
    those rows.

    :raises SiteError: if the simulations do not fit the guide's sites (see
        :func:`~pyro_lfi.model.checks.check_simulated`).
    """
    _check_simulations(simulations)
    sites = guide.require_built()
    kept = guide.usable(simulations)
    if not kept.any():
        raise ValueError(simulations.nothing_to_train_on())
    check_simulated(sites, simulations.values, simulations.latent_names, kept)
    valid = simulations[kept]
    x = sites.flat_data({n: valid.values[n] for n in guide.observed})
    z = sites.to_unconstrained(valid.latents)
    finite = torch.isfinite(z).all(-1)
    if not finite.all():
        warnings.warn(
            f"dropping {int((~finite).sum())} rows whose parameters lie on the boundary of "
            "their support (infinite in the unconstrained space)",
            stacklevel=3,
        )
        x, z = x[finite], z[finite]
        kept[kept.clone()] = finite
    _warn_if_few(guide, simulations, len(x))
    return x, z, kept


def _warn_if_few(guide: NeuralPosterior, simulations: Simulations, usable: int) -> None:
    """Warn, with the reasons rows were invalid, when too few rows are left to learn from."""
    total = len(simulations)
    if usable >= MIN_TRAINING_ROWS and usable >= MIN_USABLE_SHARE * total:
        return
    counts = ", ".join(f"{status}: {count}" for status, count in simulations.summary().items())
    reasons = ""
    messages = Counter(m for m, ok in zip(simulations.message, simulations.valid.tolist()) if m and not ok)
    if messages:
        reasons = "; most frequent errors: " + "; ".join(f"{_clip(m)!r} ({c} rows)" for m, c in messages.most_common(3))
    advice = ["simulate more"]
    if usable < MIN_USABLE_SHARE * total:
        advice.append("focus later rounds where the simulator works with pyro_lfi.SNPE(..., restrict=0.5), or "
                      "restrict=pyro_lfi.Restriction(false_negatives=0.05) where valid rows are rare")
    if guide.missing == "drop" and simulations.summary().get("nonfinite", 0):
        advice.append("train on rows with partly missing outputs with NeuralPosterior(..., missing='impute')")
    warnings.warn(
        f"only {usable} of {total} simulated rows ({usable / total:.1%}) can be trained on ({counts}"
        f"{reasons}): too few to learn a posterior from. To do: " + ", or ".join(advice),
        UserWarning,
        stacklevel=5,
    )


def _clip(message: str, limit: int = 80) -> str:
    """The first line of an error message, cut to ``limit`` characters."""
    message = message.strip().splitlines()[0] if message.strip() else message
    return shortened(message, limit)


def _device_of(module: torch.nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
