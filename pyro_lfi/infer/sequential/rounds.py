r"""Sequential neural posterior estimation: rounds of simulation focused on one observation.

Round 0 simulates from the prior. Every later round :math:`t` simulates parameters from a
proposal :math:`\tilde p_t(z)` near the current estimate at the observation :math:`x_o`, adds
them to the round-tagged simulation set and retrains with the loss that is correct for that
proposal. The proposal, the rows and loss of a round and any correction of the guide afterwards
belong to the method (:class:`~pyro_lfi.infer.sequential.method.SequentialMethod`); this loop
knows none of them:

``"apt"`` (:class:`~pyro_lfi.infer.sequential.apt.APT`, SNPE-C, Greenberg et al. 2019)
    proposals from the guide at :math:`x_o` and the atomic loss over all rounds; with a mixture
    density guide, proposals :math:`\propto p(z)\, q(z \mid x_o)` and the exact non-atomic loss.
``"snpe-a"`` (:class:`~pyro_lfi.infer.sequential.snpe_a.SNPEA`, Papamakarios & Murray 2016)
    proposals :math:`\propto p(z)\, g(z)` with :math:`g` a Gaussian; the mixture density guide,
    trained on the newest round, is divided by :math:`g` in closed form.
``"tsnpe"`` (:class:`~pyro_lfi.infer.sequential.tsnpe.TSNPE`, Deistler et al. 2022)
    proposals from the prior truncated to the guide's highest-density region at :math:`x_o`.

Invalid simulations are dropped. That is exact for NPE, TSNPE, SNPE-A and the non-atomic APT
loss, whose minimizers condition on the observation being a valid output; the atomic loss is
corrected by a classifier of :math:`P(\text{valid} \mid z)`
(:class:`~pyro_lfi.nn.validity.ValidityClassifier`, :mod:`pyro_lfi.infer.validity`). With ``restrict=gamma``
(atomic APT and TSNPE), later rounds also stop proposing where that classifier gives
:math:`P(\text{valid} \mid z) < \gamma`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...guide.posterior import NeuralPosterior
from ...model.prior import Prior
from ...options import split_options
from ...seeding import derived_seed, seeded
from ...simulation.campaign import simulate
from ...simulation.options import SimulationOptions
from ...simulation.simulations import Simulations
from ..loop import TrainingConfig, TrainingHistory, train_loop
from ..npe import OptimSpec, make_optimizer
from ..validity import ValidityClassifier
from .method import RoundLoss, SequentialMethod
from .patience import SEQUENTIAL_PATIENCE, resolve_later_patience
from .proposals import Proposal
from .registry import make_method
from .restriction import Restriction

__all__ = ["SNPE", "RoundRecord"]


@dataclass
class RoundRecord:
    """What one round did."""

    round: int
    proposal: str
    loss: str
    num_simulations: int
    num_invalid: int
    num_training_rows: int
    validation_loss: float
    epochs: int
    simulate_seconds: float  #: running the simulator
    train_seconds: float
    interrupted: bool = False  #: Ctrl-C ended the round's training (its best weights so far are kept)
    propose_seconds: float = 0.0  #: building the proposal and drawing its parameters (0 in round 0)

    @property
    def fraction_invalid(self) -> float:
        return self.num_invalid / self.num_simulations


@dataclass
class Round:
    """One round's state: its record, its training history and what it drew from."""

    record: RoundRecord
    history: TrainingHistory
    proposal: Proposal | None  #: ``None``: the prior


class SNPE:
    r"""Sequential neural posterior estimation of ``model`` at one observation.

    :param model: the Pyro model.
    :param guide: a :class:`~pyro_lfi.NeuralPosterior` of it (``estimator="mdn"`` for SNPE-A and
        for the non-atomic APT loss; the ODE estimators ``"fmpe"`` and ``"npse"`` with TSNPE only).
    :param method: ``"apt"``, ``"snpe-a"``, ``"tsnpe"`` (see the module docs) or a method object
        such as :class:`~pyro_lfi.infer.sequential.APT`\ ``(loss="atomic")``, one per SNPE.
    :param optim: as for :class:`~pyro_lfi.NPE`.
    :param loss: APT: ``"atomic"``, ``"mixture"`` (mixture density guides) or ``"auto"`` (the
        default: mixture where possible).
    :param num_atoms: APT: atoms per row of the atomic loss (default 10).
    :param quantile: TSNPE: the guide mass :math:`\epsilon` left outside the truncation region
        (default ``1e-4``).
    :param max_draws_per_sample: rejection-sampling budget per proposed sample (default 1000).
    :param restrict: if given, rounds after a failure propose only where the validity classifier
        predicts :math:`P(\text{valid} \mid z) \ge \gamma`: a probability :math:`\gamma`, or a
        :class:`~pyro_lfi.Restriction` (``Restriction(false_negatives=0.05)``: :math:`\gamma` such
        that about 5 % of valid parameters fall below it, for simulators whose valid rows are rare)
        (atomic APT and TSNPE only: the exact mixture losses need the unrestricted proposal).
    :param later_patience: ``stop_after_epochs`` of the rounds after the first, which start
        from the previous round's weights (default 10, or ``stop_after_epochs`` where that is given).
    :param config: defaults of :class:`~pyro_lfi.infer.loop.TrainingConfig` for every round
        (``stop_after_epochs`` defaults to 20 here).

    ``loss`` to ``restrict`` are shorthands for the method's constructor (``None``: its default).
    """

    def __init__(
        self,
        model,
        guide: NeuralPosterior,
        method: str | SequentialMethod = "apt",
        optim: OptimSpec = None,
        *,
        loss: str | None = None,
        num_atoms: int | None = None,
        quantile: float | None = None,
        max_draws_per_sample: int | None = None,
        restrict: float | Restriction | None = None,
        later_patience: int | None = None,
        **config,
    ):
        self.method = make_method(
            method, loss=loss, num_atoms=num_atoms, quantile=quantile, max_draws_per_sample=max_draws_per_sample,
            restrict=restrict,
        )
        if not isinstance(guide, NeuralPosterior):
            raise TypeError(f"SNPE needs a pyro_lfi.NeuralPosterior guide, got {type(guide).__name__}")
        self.method.check_guide(guide)  # e.g. atomic APT with an ODE estimator: before simulating
        self.config = TrainingConfig(stop_after_epochs=SEQUENTIAL_PATIENCE).updated(config, "SNPE(...)")
        #: the options of the rounds after the first
        self.later_config = self.config.updated({"stop_after_epochs": resolve_later_patience(later_patience, config)},
                                                "SNPE(...)")
        self._learning_rate_given = "learning_rate" in config  # a custom optim keeps its own otherwise
        self.model, self.guide, self.optim = model, guide, optim
        self.simulations: Simulations | None = None
        self.observation: torch.Tensor | None = None  # x_o, flat; read after the first round's simulations
        self.round_states: list[Round] = []

    @property
    def rounds(self) -> list[RoundRecord]:
        """What each round did."""
        return [r.record for r in self.round_states]

    @property
    def history(self) -> list[TrainingHistory]:
        """Each round's training history."""
        return [r.history for r in self.round_states]

    @property
    def proposals(self) -> list[Proposal | None]:
        """The proposal each round drew from (``None``: the prior)."""
        return [r.proposal for r in self.round_states]

    @property
    def validity(self) -> ValidityClassifier | None:
        r"""The method's classifier of :math:`P(\text{valid} \mid z)`, once one was needed."""
        return self.method.validity

    # -- the run ------------------------------------------------------------------------------

    def run(
        self,
        *args,
        num_rounds: int,
        simulations_per_round: int,
        seed: int | None = None,
        options: SimulationOptions | None = None,
        model_kwargs: dict | None = None,
        **kwargs,
    ) -> Simulations:
        """Run ``num_rounds`` more rounds of ``simulations_per_round`` simulations each, at the
        observation the model receives with ``args``/``kwargs``; call again to continue.

        ``options`` (or its fields as keywords) go to :func:`~pyro_lfi.simulate`, with the
        progress bar following this SNPE's ``progress``; with ``store``, round :math:`t` is a
        campaign in ``store/round-{t:03d}``, so an interrupted round resumes its finished batches.

        :returns: all simulations so far, tagged with their round (``.round``).
        """
        if num_rounds < 1 or simulations_per_round < 2:
            raise ValueError("num_rounds must be positive and simulations_per_round at least 2")
        default = SimulationOptions(progress=self.config.progress)
        options, kwargs = split_options(SimulationOptions, options or default, kwargs, model_kwargs)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        for i in range(num_rounds):
            store = None if options.store is None else Path(options.store) / f"round-{len(self.round_states):03d}"
            self._round(seed, simulations_per_round, args, kwargs, i == num_rounds - 1, options.updated(store=store))
        return self.simulations

    def _round(self, seed: int, n: int, args: tuple, kwargs: dict, final: bool, simulation: SimulationOptions) -> None:
        t = len(self.round_states)
        round_seed = derived_seed(seed, t)
        start = time.perf_counter()
        proposal, parameters = None, None
        if t > 0:
            self._check_observation(args, kwargs)
            proposal = self.method.propose(t)
            with seeded(round_seed):
                parameters = self.guide.sites.to_constrained(proposal.sample(n))[0]
        seconds = {"propose": time.perf_counter() - start}
        sims = self._simulate(t, parameters, n, round_seed, args, kwargs, simulation)
        seconds["simulate"] = time.perf_counter() - start - seconds["propose"]
        if t == 0:
            self._start(args, kwargs)
        seed_of_round = self.config.seed if self.config.seed is not None else round_seed
        options = dataclasses.replace(self.later_config if t > 0 else self.config, seed=seed_of_round)
        history, round_loss = TrainingHistory(), None
        try:
            round_loss = self.method.round_loss(t, self.simulations, options, final)
            self._train(round_loss, options, history)
        except KeyboardInterrupt:  # recorded too, so that a later run continues the sequence of rounds
            history.interrupted = True
            self._record(t, proposal, sims, seconds, history, round_loss, final)
            raise
        self._record(t, proposal, sims, seconds, history, round_loss, final)

    def _simulate(self, t: int, parameters: dict[str, torch.Tensor] | None, n: int, seed: int, args: tuple,
                  kwargs: dict, options: SimulationOptions) -> Simulations:
        """Round ``t``'s simulations at the proposed ``parameters`` (from the prior for ``None``),
        added to all so far."""
        sims = simulate(self.model, n, *args, seed=seed, parameters=parameters, options=options, model_kwargs=kwargs)
        sims.round[:] = t
        self.simulations = sims if self.simulations is None else self.simulations + sims
        return sims

    def _record(
        self, t: int, proposal: Proposal | None, sims: Simulations, seconds: dict[str, float],
        history: TrainingHistory, round_loss: RoundLoss | None, final: bool,
    ) -> None:
        if history.best_epoch >= 0:  # the round kept trained weights
            self.method.correct(t, final)
        n = len(sims)
        record = RoundRecord(
            t, proposal.name if proposal is not None else "prior", round_loss.name if round_loss else "", n,
            n - sims.num_valid, round_loss.num_rows if round_loss else 0, history.best_validation_loss,
            history.epochs, seconds["simulate"], history.seconds, history.interrupted, seconds["propose"],
        )
        self.round_states.append(Round(record, history, proposal))

    def _start(self, args: tuple, kwargs: dict) -> None:
        """After the first simulations: build the guide, read the observation and the prior, and
        let the method check them."""
        if not self.guide.is_built:
            with seeded(self.config.seed):  # the networks' initial weights
                self.guide.build(self.simulations, *args, **kwargs)
        self.observation = self.guide.observation(*args, **kwargs)
        if self.observation.dim() != len(self.guide.x_shape):
            raise ValueError("sequential methods focus on one observation, not a batch")
        self.method.start(self.guide, Prior(self.model, self.guide.sites, *args, **kwargs), self.observation)

    def _check_observation(self, args: tuple, kwargs: dict) -> None:
        x_o = self.guide.observation(*args, **kwargs)
        scale = float(self.observation.nan_to_num(0.0, 0.0, 0.0).abs().max()) if self.observation.numel() else 0.0
        same = x_o.shape == self.observation.shape and torch.allclose(  # regenerated floats: a tolerance
            x_o.to(self.observation), self.observation, rtol=1e-5, atol=1e-6 * scale, equal_nan=True
        )
        if not same:
            raise ValueError(
                "this SNPE run is focused on another observation: its earlier rounds were proposed "
                "for it; start a new SNPE (and guide) for a new observation"
            )

    def _train(self, round_loss: RoundLoss, options: TrainingConfig, history: TrainingHistory) -> None:
        """Minimize the round's loss from the guide's current weights; fills ``history``."""
        device = next(self.guide.parameters()).device
        given = self.optim is None or self._learning_rate_given
        optimizer = make_optimizer(self.optim, self.guide.parameters(), options.learning_rate if given else None)
        data = tuple(d.to(device) for d in round_loss.tensors)
        train_loop(self.guide, round_loss.loss, data, optimizer, options, history)

    # -- export ---------------------------------------------------------------------------------

    def history_table(self):
        """The per-round records as a :class:`pandas.DataFrame`."""
        import pandas as pd

        table = pd.DataFrame([dataclasses.asdict(r) for r in self.rounds])
        if len(table):
            table["fraction_invalid"] = [r.fraction_invalid for r in self.rounds]
        return table
