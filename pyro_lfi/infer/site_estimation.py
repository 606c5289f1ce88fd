r"""Training a learned likelihood or ratio of a Simulator site on simulated trials
:math:`(\psi_i, x_i)`: what :class:`~pyro_lfi.infer.nle.NLE` and :class:`~pyro_lfi.infer.nre.NRE`
share (the rows, the lazy build, the optimizer, the shared loop, simulating first)."""

from __future__ import annotations

import torch

from ..likelihood.site_estimator import SiteEstimator
from ..options import split_options
from ..seeding import seeded
from ..simulation.campaign import simulate
from ..simulation.options import SimulationOptions
from ..simulation.simulations import Simulations
from .history import TrainingHistory
from .loop import TrainingConfig, train_loop
from .npe import OptimSpec, make_optimizer
from .validity import fit_classifier

__all__ = ["SiteEstimation"]


class SiteEstimation:
    """Fits ``estimator`` (a :class:`~pyro_lfi.likelihood.site_estimator.SiteEstimator` of
    ``model``) by minimizing :meth:`loss`; ``config`` as for :class:`~pyro_lfi.NPE`."""

    #: the estimator class this training takes
    estimator_class: type[SiteEstimator] = SiteEstimator

    def __init__(self, model, estimator: SiteEstimator, optim: OptimSpec = None, **config):
        name = type(self).__name__
        if not isinstance(estimator, self.estimator_class):
            raise TypeError(f"{name} needs a pyro_lfi.{self.estimator_class.__name__}, got {type(estimator).__name__}")
        self.model, self.estimator, self.optim = model, estimator, optim
        self.config = TrainingConfig().updated(config, f"{name}(...)")
        self.history: list[TrainingHistory] = []

    def loss(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of flat parameters and outputs."""
        raise NotImplementedError

    def train(self, simulations: Simulations, *, model_args: tuple = (), model_kwargs: dict | None = None,
              **config) -> TrainingHistory:
        """Fit the estimator to every valid simulated trial of ``simulations`` (built from them
        first if needed; ``model_args``/``model_kwargs`` are the model's arguments). Losses that
        draw (e.g. NRE's pairings) run under ``seed``. Where some simulations failed, a
        classifier of :math:`P(\text{valid} \\mid \\psi)` is fitted on all of them too, and the
        estimator's log density in the model includes it
        (:meth:`~pyro_lfi.likelihood.site_estimator.SiteEstimator.log_density`)."""
        options = self.config.updated(config, f"{type(self).__name__}.train(...)")
        if not isinstance(simulations, Simulations):
            raise TypeError(f"expected pyro_lfi.Simulations, got {type(simulations).__name__}")
        psi, x = self.estimator.training_pairs(simulations, *model_args, **(model_kwargs or {}))
        if self.estimator.is_built:
            self.estimator.cover(psi)
        else:
            with seeded(options.seed):  # the networks' initial weights
                self.estimator.create_for(psi, x)
        if not simulations.valid.all():  # the simulator fails somewhere: learn where
            psi_all, valid = self.estimator.validity_pairs(simulations, *model_args, **(model_kwargs or {}))
            with seeded(options.seed):
                self.estimator.validity = fit_classifier(psi_all, valid, options)
            self.estimator.cover(psi_all)  # the classifier speaks for the failed rows' parameters
        parameters = [p for name, p in self.estimator.named_parameters() if not name.startswith("validity.")]
        optimizer = make_optimizer(self.optim, parameters, options.learning_rate)
        history = TrainingHistory()
        try:
            with seeded(options.seed):
                train_loop(self.estimator, self.loss, (psi, x), optimizer, options, history)
        finally:
            self.history.append(history)
        return history

    def run(self, num_simulations: int, *args, seed: int | None = None, options: SimulationOptions | None = None,
            model_kwargs: dict | None = None, **kwargs) -> Simulations:
        """Simulate ``num_simulations`` rows of ``model(*args, **kwargs)`` and train on them."""
        default = SimulationOptions(progress=self.config.progress)
        options, kwargs = split_options(SimulationOptions, options or default, kwargs, model_kwargs)
        sims = simulate(self.model, num_simulations, *args, seed=seed, options=options, model_kwargs=kwargs)
        self.train(sims, model_args=args, model_kwargs=kwargs)
        return sims
