r"""Sequential likelihood and ratio estimation at one observation: SNLE (Papamakarios et al. 2019)
and SNRE (Hermans et al. 2020; Durkan et al. 2020).

Round 0 simulates from the prior. Every later round :math:`t` draws parameters from the current
surrogate posterior at :math:`x_o`, :math:`p(\theta)\, q_t(x_o \mid \psi(\theta))` (or
:math:`p(\theta)\, r_t(x_o, \psi(\theta))`), with :func:`~pyro_lfi.sample_posterior`'s
multi-chain NUTS or with adaptive importance sampling (``sampler=``; from round 2 on, either
starts from the previous round's draws reweighted by :math:`q_t / q_{t-1}`, a
:class:`~pyro_lfi.infer.candidates.WarmStart`, rather than from prior draws weighted by
:math:`q_t`), simulates them through :func:`~pyro_lfi.simulate` and retrains the estimator on
every round so far, from its current weights. Unlike a posterior, a likelihood needs no
correction for the proposal: :math:`q(x \mid \psi)` is what it is wherever :math:`\psi` was
drawn, and a ratio trained on any proposal is the likelihood up to a factor constant in
:math:`\psi`. Where simulations fail, the estimator is of valid outputs and its log density in
the model includes :math:`\log P(\text{valid} \mid \psi)` (see
:meth:`~pyro_lfi.likelihood.site_estimator.SiteEstimator.log_density`), so that parameters
where the simulator fails are not proposed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...likelihood import NeuralLikelihood, NeuralRatio, surrogate
from ...options import split_options
from ...seeding import derived_seed
from ...simulation.campaign import simulate
from ...simulation.options import SimulationOptions
from ...simulation.simulations import Simulations
from ..candidates import WarmStart, log_likelihood
from ..history import TrainingHistory
from ..importance import importance_posterior
from ..nle import NLE
from ..npe import OptimSpec
from ..nre import NRE
from ..posterior_sampling import posterior_chains
from ..site_estimation import SiteEstimation
from .patience import resolve_later_patience

__all__ = ["SAMPLERS", "SNLE", "SNRE", "SiteRoundRecord"]

#: how :class:`SNLE` and :class:`SNRE` draw the surrogate posterior, by name
SAMPLERS = {"nuts": posterior_chains, "importance": importance_posterior}


@dataclass
class SiteRoundRecord:
    """What one round of :class:`SNLE` / :class:`SNRE` did."""

    round: int
    num_simulations: int
    num_invalid: int
    validation_loss: float
    epochs: int
    propose_seconds: float  #: sampling the surrogate posterior (0 in round 0)
    simulate_seconds: float
    train_seconds: float


class SNLE:
    r"""Sequential neural likelihood estimation of ``estimator``'s Simulator site of ``model`` at
    one observation (see the module docs).

    :param model: the Pyro model.
    :param estimator: a :class:`~pyro_lfi.NeuralLikelihood` of it.
    :param optim: as for :class:`~pyro_lfi.NPE`.
    :param sampler: how each round's proposal and :meth:`sample` draw the surrogate posterior:
        ``"nuts"``, multi-chain NUTS (:func:`~pyro_lfi.sample_posterior`), or ``"importance"``,
        adaptive importance sampling (:func:`~pyro_lfi.importance_posterior`: batched density
        evaluations without gradients, far faster for a posterior of a few dimensions; its Pareto
        k-hat warns where it cannot be trusted).
    :param num_chains: NUTS chains of each round's proposal (``"nuts"`` only).
    :param num_candidates: prior draws the chains' starts are resampled from (``"nuts"``), or
        rows of each importance population (``"importance"``).
    :param sampler_kwargs: further options of :func:`~pyro_lfi.sample_posterior` or
        :func:`~pyro_lfi.importance_posterior`.
    :param later_patience: ``stop_after_epochs`` of the rounds after the first, which continue
        from the previous round's weights (default 10, or ``stop_after_epochs`` where that is given).
    :param config: :class:`~pyro_lfi.TrainingConfig` options of every round's training.
    """

    training_class: type[SiteEstimation] = NLE

    def __init__(
        self, model, estimator: NeuralLikelihood | NeuralRatio, optim: OptimSpec = None, *, sampler: str = "nuts",
        num_chains: int = 4, num_candidates: int = 10_000, sampler_kwargs: dict | None = None,
        later_patience: int | None = None, **config,
    ):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}'; choose one of {list(SAMPLERS)}")
        self.training = self.training_class(model, estimator, optim=optim, **config)
        self.later_patience = resolve_later_patience(later_patience, config)
        self.model, self.estimator, self.sampler = model, estimator, sampler
        chains = {"num_chains": num_chains} if sampler == "nuts" else {}
        self.sampler_options = {**chains, "num_candidates": num_candidates, **(sampler_kwargs or {})}
        self.simulations: Simulations | None = None
        self.rounds: list[SiteRoundRecord] = []
        #: the last round's proposed parameters and their log likelihood under the estimator then
        self.warm_start: WarmStart | None = None

    @property
    def history(self) -> list[TrainingHistory]:
        """Each round's training history."""
        return self.training.history

    def surrogate(self):
        """The model with the estimator in place of its simulator (a tractable Pyro model). Its
        first round's simulations are draws of this model's own prior, so the check that the prior
        stays where the estimator was trained (:func:`~pyro_lfi.surrogate`'s ``check_reach``) is
        not made: it would only refuse a small first round's budget."""
        return surrogate(self.model, self.estimator, check_reach=False)

    def sample(self, num_samples: int, *args, seed: int | None = 0, **kwargs) -> dict[str, torch.Tensor]:
        """Draws of the surrogate posterior at the observation the model receives with
        ``args``/``kwargs``, by the ``sampler`` chosen."""
        return self._draw(self.surrogate(), num_samples, seed, None, args, kwargs)

    def _draw(
        self, model, num_samples: int, seed: int | None, warm_start: WarmStart | None, args: tuple, kwargs: dict
    ) -> dict[str, torch.Tensor]:
        sample = SAMPLERS[self.sampler]
        return sample(model, num_samples, *args, seed=seed, warm_start=warm_start, **self.sampler_options,
                      **kwargs).get_samples()

    def run(
        self, *args, num_rounds: int, simulations_per_round: int, seed: int | None = None,
        options: SimulationOptions | None = None, model_kwargs: dict | None = None, **kwargs,
    ) -> Simulations:
        """Run ``num_rounds`` more rounds of ``simulations_per_round`` simulations each, at the
        observation the model receives with ``args``/``kwargs``; call again to continue.
        ``options`` as for :meth:`~pyro_lfi.SNPE.run` (with ``store``, round :math:`t` is the
        campaign ``store/round-{t:03d}``).

        :returns: all simulations so far, tagged with their round (``.round``).
        """
        if num_rounds < 1 or simulations_per_round < 2:
            raise ValueError("num_rounds must be positive and simulations_per_round at least 2")
        default = SimulationOptions(progress=self.training.config.progress)
        options, kwargs = split_options(SimulationOptions, options or default, kwargs, model_kwargs)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        for _ in range(num_rounds):
            t = len(self.rounds)
            store = None if options.store is None else Path(options.store) / f"round-{t:03d}"
            self._round(t, derived_seed(seed, t), simulations_per_round, args, kwargs, options.updated(store=store))
        return self.simulations

    def _round(self, t: int, seed: int, n: int, args: tuple, kwargs: dict, options: SimulationOptions) -> None:
        start = time.perf_counter()
        parameters = None
        if t > 0:
            parameters = self._propose(n, seed, args, kwargs)
        proposed = time.perf_counter()
        sims = simulate(self.model, n, *args, seed=seed, parameters=parameters, options=options, model_kwargs=kwargs)
        sims.round[:] = t
        self.simulations = sims if self.simulations is None else self.simulations + sims
        simulated = time.perf_counter()
        later = {"stop_after_epochs": self.later_patience} if t > 0 else {}
        history = self.training.train(self.simulations, model_args=args, model_kwargs=kwargs, **later)
        self.rounds.append(SiteRoundRecord(
            t, n, n - sims.num_valid, history.best_validation_loss, history.epochs, proposed - start,
            simulated - proposed, history.seconds,
        ))

    def _propose(self, n: int, seed: int, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        """``n`` draws of the surrogate posterior, started from the last round's (see the module
        docs), kept with their log likelihood for the next round's starts."""
        model = self.surrogate()
        draws = self._draw(model, n, seed, self.warm_start, args, kwargs)
        parameters = {name: value.detach() for name, value in draws.items()}
        self.warm_start = WarmStart(parameters, log_likelihood(model, parameters, args, kwargs))
        return parameters


class SNRE(SNLE):
    r"""Sequential neural ratio estimation: :class:`SNLE`'s rounds with a
    :class:`~pyro_lfi.NeuralRatio` trained by :class:`~pyro_lfi.NRE` (``loss=`` and its options
    among ``config``). Prior :math:`\times` ratio is the posterior whatever the proposal, within
    the proposals' support (Durkan et al. 2020)."""

    training_class = NRE
