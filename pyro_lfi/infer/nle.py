r"""Neural likelihood estimation (Papamakarios et al. 2019): fit :math:`q_\phi(x \mid \psi)` of a
Simulator site to simulations, by

.. math:: \min_\phi\; -\frac1m \sum_{i=1}^m \log q_\phi(x_i \mid \psi_i),

over every valid simulated trial :math:`(\psi_i, x_i)`; its minimizer is the simulator's
likelihood wherever the training parameters :math:`\psi` have mass, whatever the prior. Then
:func:`~pyro_lfi.likelihood.surrogate` puts it back into the model for Pyro's own inference.
"""

from __future__ import annotations

import torch

from ..likelihood import NeuralLikelihood
from ..options import split_options
from ..seeding import seeded
from ..simulation.campaign import simulate
from ..simulation.options import SimulationOptions
from ..simulation.simulations import Simulations
from .history import TrainingHistory
from .loop import TrainingConfig, train_loop
from .npe import OptimSpec, make_optimizer

__all__ = ["NLE", "nle_loss"]


def nle_loss(likelihood: NeuralLikelihood, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`-\frac1m \sum_i \log q_\phi(x_i \mid \psi_i)` for flat parameters ``psi``."""
    return -likelihood.conditional(psi).log_prob(x.reshape(len(x), -1)).mean()


class NLE:
    """Neural likelihood estimation of ``likelihood``'s Simulator site of ``model``.

    :param model: the Pyro model.
    :param likelihood: a :class:`~pyro_lfi.likelihood.NeuralLikelihood` of one of its sites.
    :param optim: as for :class:`~pyro_lfi.NPE`.
    :param config: defaults of :class:`~pyro_lfi.TrainingConfig`, overridable per :meth:`train`.
    """

    def __init__(self, model, likelihood: NeuralLikelihood, optim: OptimSpec = None, **config):
        if not isinstance(likelihood, NeuralLikelihood):
            raise TypeError(f"NLE needs a pyro_lfi.NeuralLikelihood, got {type(likelihood).__name__}")
        self.model, self.likelihood, self.optim = model, likelihood, optim
        self.config = TrainingConfig().updated(config, "NLE(...)")
        self.history: list[TrainingHistory] = []

    def train(self, simulations: Simulations, *, model_args: tuple = (), model_kwargs: dict | None = None,
              **config) -> TrainingHistory:
        """Fit the likelihood to every valid simulated trial of ``simulations`` (built from them
        first if needed; ``model_args``/``model_kwargs`` are the model's arguments)."""
        options = self.config.updated(config, "NLE.train(...)")
        if not isinstance(simulations, Simulations):
            raise TypeError(f"expected pyro_lfi.Simulations, got {type(simulations).__name__}")
        kwargs = model_kwargs or {}
        if not self.likelihood.is_built:
            with seeded(options.seed):  # the networks' initial weights
                self.likelihood.build(simulations, *model_args, **kwargs)
        psi, x = self.likelihood.training_pairs(simulations, *model_args, **kwargs)
        optimizer = make_optimizer(self.optim, self.likelihood.parameters(), options.learning_rate)
        history = TrainingHistory()
        try:
            train_loop(self.likelihood, lambda p, xb: nle_loss(self.likelihood, p, xb), (psi, x), optimizer, options,
                       history)
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
