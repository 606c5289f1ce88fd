r"""Sequential neural posterior estimation: rounds of simulation focused on one observation.

Round 0 simulates from the prior and trains with the NPE loss. Every later round proposes
parameters near the current estimate at the observation :math:`x_o`, simulates them, adds them
to the round-tagged simulation set and retrains with the loss that is correct for that proposal:

``"apt"`` (SNPE-C, Greenberg et al. 2019)
    proposals from the guide at :math:`x_o` and the atomic loss over all rounds; with a mixture
    density guide (``loss="mixture"``, the default for one) proposals :math:`\propto p(z)\,
    q(z \mid x_o)` and the exact non-atomic loss, each row with its own round's proposal.
``"snpe-a"`` (Papamakarios & Murray 2016)
    proposals :math:`\propto p(z)\, g(z)` with :math:`g` the Gaussian matched to the guide at
    :math:`x_o`; the mixture density guide is trained with the NPE loss on the newest round,
    which fits :math:`p(z \mid x)\, g(z)` up to a constant, and divided by :math:`g` in closed form.
    As in the paper, it proposes with one Gaussian (its first component) and uses every component
    in the final round of each :meth:`SNPE.run`, all starting as copies of that Gaussian.
``"tsnpe"`` (Deistler et al. 2022)
    proposals from the prior truncated to the guide's highest-density region at :math:`x_o`,
    where the plain NPE loss over all rounds stays correct.

Invalid simulations are dropped. That is exact for NPE, TSNPE, SNPE-A and the non-atomic APT
loss, whose minimizers condition on the observation being a valid output. The atomic loss
compares rows with other rows' parameters, which dropping biases by :math:`1/P(\text{valid}
\mid z)`; a classifier of :math:`P(\text{valid} \mid z)` trained on all rows
(:class:`~pyro_lfi.infer.sequential.validity.ValidityClassifier`) corrects the prior term.

With ``restrict=gamma`` (atomic APT and TSNPE, whose losses hold for any proposal), later rounds
also stop proposing where that classifier gives :math:`P(\text{valid} \mid z) < \gamma`, so a
simulator that fails in part of the prior stops costing simulations there.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...guide.posterior import NeuralPosterior
from ...model.prior import Prior
from ...nn import MixtureDensityNetwork
from ...seeding import derived_seed, seeded
from ...simulation.campaign import simulate
from ...simulation.simulations import Simulations
from ..loop import TrainingConfig, TrainingHistory, train_loop
from ..losses import npe_loss
from ..npe import OptimSpec, make_optimizer, training_tensors
from .apt import atomic_apt_loss, mixture_apt_loss
from .mixtures import as_mixture, is_gaussian_mixture, moment_matched_gaussian
from .proposals import GuideProposal, PriorTimesMixture, RestrictedProposal, TruncatedPrior
from .snpe_a import GaussianDivision
from .validity import ValidityClassifier

__all__ = ["SNPE", "RoundRecord"]

METHODS = ("apt", "snpe-a", "tsnpe")
#: Early-stopping patience of every round (sbi's default; rounds after the first start from the
#: previous round's weights and need fewer epochs than a cold start).
SEQUENTIAL_PATIENCE = 20


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
    simulate_seconds: float  #: proposing and simulating
    train_seconds: float
    interrupted: bool = False  #: Ctrl-C ended the round's training (its best weights so far are kept)

    @property
    def fraction_invalid(self) -> float:
        return self.num_invalid / self.num_simulations


class SNPE:
    r"""Sequential neural posterior estimation of ``model`` at one observation.

    :param model: the Pyro model.
    :param guide: a :class:`~pyro_lfi.NeuralPosterior` of it (``estimator="mdn"`` for SNPE-A and
        for the non-atomic APT loss).
    :param method: ``"apt"``, ``"snpe-a"`` or ``"tsnpe"`` (see the module docs).
    :param optim: as for :class:`~pyro_lfi.NPE`.
    :param loss: for APT, ``"atomic"``, ``"mixture"`` (non-atomic; mixture density guides) or
        ``"auto"`` (mixture where possible).
    :param num_atoms: atoms per row of the atomic loss.
    :param quantile: TSNPE: the guide mass :math:`\epsilon` left outside the truncation region.
    :param max_draws_per_sample: rejection-sampling budget per proposed sample.
    :param restrict: if given, a probability :math:`\gamma`: rounds after a failure propose only
        where the validity classifier predicts :math:`P(\text{valid} \mid z) \ge \gamma`
        (atomic APT and TSNPE only: the exact mixture losses need the unrestricted proposal).
    :param config: defaults of :class:`~pyro_lfi.infer.loop.TrainingConfig` for every round
        (``stop_after_epochs`` defaults to 20 here).
    """

    def __init__(
        self,
        model,
        guide: NeuralPosterior,
        method: str = "apt",
        optim: OptimSpec = None,
        *,
        loss: str = "auto",
        num_atoms: int = 10,
        quantile: float = 1e-4,
        max_draws_per_sample: int = 1000,
        restrict: float | None = None,
        **config,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}'; choose one of {METHODS}")
        if loss not in ("auto", "atomic", "mixture"):
            raise ValueError(f"unknown loss '{loss}'; choose 'auto', 'atomic' or 'mixture'")
        if loss != "auto" and method != "apt":
            raise ValueError(f"loss='{loss}' applies to method='apt' only; {method} has one correct loss")
        if num_atoms < 2:
            raise ValueError(f"num_atoms must be at least 2, got {num_atoms}")
        if restrict is not None and not 0 < restrict < 1:
            raise ValueError(f"restrict is a probability in (0, 1), got {restrict}")
        if restrict is not None and (method == "snpe-a" or loss == "mixture"):
            raise ValueError(
                "restrict works with the atomic APT loss and TSNPE only: the exact losses of "
                f"method='{method}'" + (" with loss='mixture'" if method == "apt" else "")
                + " need the unrestricted proposal"
            )
        if not isinstance(guide, NeuralPosterior):
            raise TypeError(f"SNPE needs a pyro_lfi.NeuralPosterior guide, got {type(guide).__name__}")
        self.config = TrainingConfig(stop_after_epochs=SEQUENTIAL_PATIENCE).updated(config, "SNPE(...)")
        self._learning_rate_given = "learning_rate" in config
        self.model, self.guide, self.method, self.optim = model, guide, method, optim
        self.loss_choice, self.num_atoms, self.quantile = loss, num_atoms, quantile
        self.max_draws_per_sample = max_draws_per_sample
        self.restrict = restrict
        self.simulations: Simulations | None = None
        self.rounds: list[RoundRecord] = []
        self.history: list[TrainingHistory] = []  # per round: the training loop's history
        self.proposal_factors: list = []  # per round: the mixture r (APT) or Gaussian g (SNPE-A)
        self.proposals: list = []  # per round: the proposal it sampled from (None: the prior)
        self.validity: ValidityClassifier | None = None
        self._observation: torch.Tensor | None = None
        self._prior: Prior | None = None

    # -- the run ------------------------------------------------------------------------------

    def run(
        self,
        *args,
        num_rounds: int,
        simulations_per_round: int,
        seed: int | None = None,
        batch_size: int | None = None,
        executor=None,
        workers: int | None = None,
        store: str | os.PathLike | None = None,
        timeout: float | None = None,
        isolate: bool = False,
        force: bool = False,
        **kwargs,
    ) -> Simulations:
        """Run ``num_rounds`` more rounds of ``simulations_per_round`` simulations each, at the
        observation the model receives with ``args``/``kwargs``; call again to continue.

        ``batch_size``, ``executor``, ``workers``, ``timeout``, ``isolate`` and ``force`` go to
        :func:`~pyro_lfi.simulate`; with ``store``, round :math:`t` is a campaign in
        ``store/round-{t:03d}``, so an interrupted round resumes its finished batches.

        :returns: all simulations so far, tagged with their round (``.round``).
        """
        if num_rounds < 1 or simulations_per_round < 2:
            raise ValueError("num_rounds must be positive and simulations_per_round at least 2")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        options = {"batch_size": batch_size, "executor": executor, "workers": workers, "timeout": timeout,
                   "isolate": isolate, "force": force}
        for i in range(num_rounds):
            round_store = None if store is None else Path(store) / f"round-{len(self.rounds):03d}"
            self._round(
                seed, simulations_per_round, args, kwargs, final=i == num_rounds - 1,
                simulation={**options, "store": round_store},
            )
        return self.simulations

    def _round(self, seed: int, n: int, args, kwargs, final: bool, simulation: dict) -> None:
        t = len(self.rounds)
        round_seed = derived_seed(seed, t)
        start = time.perf_counter()
        proposal = self._proposal(t, args, kwargs)
        self.proposals.append(proposal)
        parameters = None
        if proposal is not None:
            with seeded(round_seed):
                z = proposal.sample(n)
            parameters = self.guide.sites.to_constrained(z)[0]
        sims = simulate(
            self.model, n, *args, seed=round_seed, parameters=parameters, progress=self.config.progress,
            **simulation, **kwargs,
        )
        sims.round[:] = t
        self.simulations = sims if self.simulations is None else self.simulations + sims
        simulate_seconds = time.perf_counter() - start
        if t == 0:
            self._start(args, kwargs)
        if self.method == "snpe-a":
            self._set_components(final)
        history, trained = TrainingHistory(), {"loss": "", "rows": 0}
        try:
            self._train(t, round_seed, history, trained)
        except KeyboardInterrupt:  # recorded too, so that a later run continues the sequence of rounds
            history.interrupted = True
            self._record(t, proposal, n, sims, simulate_seconds, history, trained)
            raise
        self._record(t, proposal, n, sims, simulate_seconds, history, trained)

    def _record(self, t, proposal, n, sims, simulate_seconds, history: TrainingHistory, trained: dict) -> None:
        if self.method == "snpe-a" and history.best_epoch >= 0:
            factor = self.proposal_factors[t]
            self.guide.correction = None if factor is None else GaussianDivision(factor)
        self.history.append(history)
        self.rounds.append(
            RoundRecord(
                t, proposal.name if proposal is not None else "prior", trained["loss"], n, n - sims.num_valid,
                trained["rows"], history.best_validation_loss, history.epochs, simulate_seconds, history.seconds,
                history.interrupted,
            )
        )

    def _start(self, args, kwargs) -> None:
        """After the first simulations: build the guide, read the observation and the prior."""
        if not self.guide.is_built:
            with seeded(self.config.seed):  # the networks' initial weights
                self.guide.build(self.simulations, *args, **kwargs)
        self._observation = self.guide.observation(*args, **kwargs)
        if self._observation.dim() != len(self.guide.x_shape):
            raise ValueError("sequential methods focus on one observation, not a batch")
        self._prior = Prior(self.model, self.guide.sites, *args, **kwargs)
        uses_mixture = self.method == "snpe-a" or (self.method == "apt" and self.loss_choice != "atomic")
        is_mdn = is_gaussian_mixture(self.guide.estimate(self._observation))
        if uses_mixture and not is_mdn and (self.method == "snpe-a" or self.loss_choice == "mixture"):
            raise ValueError(
                f"method='{self.method}'" + (" with loss='mixture'" if self.method == "apt" else "")
                + " needs a mixture density guide: NeuralPosterior(model, estimator='mdn')"
            )
        self.mixture_loss = self.method == "apt" and is_mdn and self.loss_choice != "atomic"
        if self.mixture_loss and self.restrict is not None:
            raise ValueError(
                "restrict needs the atomic APT loss, but this mixture density guide gets the exact "
                "mixture loss: pass loss='atomic' as well"
            )
        if self.method == "snpe-a" or self.mixture_loss:
            self._prior.mode()  # fails early, naming the site, where the prior is unsupported

    def _set_components(self, final: bool) -> None:
        """SNPE-A (as Papamakarios & Murray 2016): one Gaussian while proposing, every component
        of the mixture in the final round, each starting as a copy of the fitted Gaussian."""
        mdn = self.guide.estimator
        if not isinstance(mdn, MixtureDensityNetwork) or mdn.components == 1:
            return
        if final:
            mdn.replicate_first_component()
        else:
            mdn.active_components = 1

    def _check_observation(self, args, kwargs) -> None:
        x_o = self.guide.observation(*args, **kwargs)
        scale = float(self._observation.nan_to_num(0.0, 0.0, 0.0).abs().max()) if self._observation.numel() else 0.0
        same = x_o.shape == self._observation.shape and torch.allclose(  # regenerated floats: a tolerance
            x_o.to(self._observation), self._observation, rtol=1e-5, atol=1e-6 * scale, equal_nan=True
        )
        if not same:
            raise ValueError(
                "this SNPE run is focused on another observation: its earlier rounds were proposed "
                "for it; start a new SNPE (and guide) for a new observation"
            )

    def _proposal(self, t: int, args, kwargs):
        proposal = self._base_proposal(t, args, kwargs)
        if proposal is None or self.restrict is None or self.validity is None:
            return proposal
        return RestrictedProposal(proposal, self.validity.log_prob_valid, self.restrict, self.max_draws_per_sample)

    def _base_proposal(self, t: int, args, kwargs):
        if t == 0:
            self.proposal_factors.append(None)
            return None
        self._check_observation(args, kwargs)
        with torch.no_grad():
            q = self.guide.conditional(self._observation)
        if self.method == "tsnpe":
            self.proposal_factors.append(None)
            return TruncatedPrior(self._prior, q, self.quantile, max_draws_per_sample=self.max_draws_per_sample)
        if self.method == "snpe-a":
            factor = moment_matched_gaussian(q)
            self.proposal_factors.append(factor)
            return PriorTimesMixture(self._prior, as_mixture(factor), self.max_draws_per_sample)
        if self.mixture_loss:
            self.proposal_factors.append(q)
            return PriorTimesMixture(self._prior, q, self.max_draws_per_sample)
        self.proposal_factors.append(None)
        return GuideProposal(q)

    # -- training -------------------------------------------------------------------------------

    def _train(self, t: int, seed: int, history: TrainingHistory, trained: dict) -> None:
        """Train round ``t``; fills ``history`` and ``trained`` (the loss's name and the number of
        training rows) as it goes."""
        sims = self.simulations
        rows = (sims.round == t) if self.method == "snpe-a" else torch.ones(len(sims), dtype=torch.bool)
        x, z, kept = training_tensors(self.guide, sims[rows])
        trained["rows"] = len(x)
        rounds = sims.round[rows][kept]
        options = dataclasses.replace(self.config, seed=self.config.seed if self.config.seed is not None else seed)
        self._fit_validity(t, options)
        guide = self.guide
        if t == 0 or self.method in ("tsnpe", "snpe-a"):
            name, data, loss = "npe", (x, z), lambda xb, zb: npe_loss(guide, xb, zb)
        elif self.mixture_loss:
            factors = self.proposal_factors
            name, data = "apt (mixture)", (x, z, rounds)

            def loss(xb, zb, rb):
                total = 0.0
                for r in rb.unique().tolist():
                    mask = rb == r
                    total = total + mixture_apt_loss(guide, xb[mask], zb[mask], factors[r]) * mask.sum()
                return total / len(rb)
        else:
            log_prior = self._atomic_log_prior(z)
            name, data = "apt (atomic)", (x, z, log_prior)

            def loss(xb, zb, lb):
                return atomic_apt_loss(guide, xb, zb, lb, self.num_atoms)

        trained["loss"] = name
        device = next(guide.parameters()).device
        given = self.optim is None or self._learning_rate_given
        optimizer = make_optimizer(self.optim, guide.parameters(), options.learning_rate if given else None)
        train_loop(guide, loss, tuple(d.to(device) for d in data), optimizer, options, history)

    def _atomic_log_prior(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)`, plus :math:`\log P(\text{valid} \mid z)` where rows failed."""
        with torch.no_grad():
            log_prior = self._prior.log_prob(z)
            return log_prior if self.validity is None else log_prior + self.validity.log_prob_valid(z)

    def _fit_validity(self, t: int, config: TrainingConfig) -> None:
        r"""Train :math:`P(\text{valid} \mid z)` on every row so far, if any failed and the atomic
        loss or the restriction needs it."""
        sims = self.simulations
        usable = self.guide.usable(sims)
        needed = self.restrict is not None or (t > 0 and self.method == "apt" and not self.mixture_loss)
        if usable.all() or not needed:
            return
        all_z = self.guide.sites.to_unconstrained(sims.latents)
        finite = torch.isfinite(all_z).all(-1)
        self.validity = ValidityClassifier(all_z.shape[-1]).fit(all_z[finite], usable[finite], config)

    # -- export ---------------------------------------------------------------------------------

    def history_table(self):
        """The per-round records as a :class:`pandas.DataFrame`."""
        import pandas as pd

        table = pd.DataFrame([dataclasses.asdict(r) for r in self.rounds])
        if len(table):
            table["fraction_invalid"] = [r.fraction_invalid for r in self.rounds]
        return table

