r"""SNPE-A (Papamakarios & Murray 2016): the posterior from a Gaussian proposal in closed form.

Round :math:`t \ge 1` proposes :math:`\tilde p_t(z) \propto p(z)\, g_t(z)`, with :math:`g_t` the
Gaussian matched to the posterior estimate at :math:`x_o`, and trains a mixture density guide
with the NPE loss on that round's rows alone. The guide then fits :math:`p(z \mid x)\, g_t(z)` up
to a constant, and the posterior is the normalized :math:`q(z \mid x) / g_t(z)`, a Gaussian
mixture again (:func:`~.mixtures.divide_by_gaussian`).

As in the paper, the proposal rounds fit one Gaussian, the mixture's first component; the final
round of each :meth:`SNPE.run` starts every component as a copy of it and fits them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro.distributions import MixtureSameFamily, MultivariateNormal
from torch.distributions import Distribution

from ...guide.posterior import NeuralPosterior
from ...model.prior import Prior
from ...nn import MixtureDensityNetwork
from ...simulation.simulations import Simulations
from ..loop import TrainingConfig
from .method import RoundLoss, SequentialMethod, unrestricted_only
from .mixtures import as_mixture, divide_by_gaussian, first_component, moment_matched_gaussian
from .proposals import PriorTimesMixture, Proposal

__all__ = ["SNPEA", "GaussianDivision"]


@dataclass
class GaussianDivision:
    r"""The guide's correction after an SNPE-A round: :math:`q(z \mid x) / g(z)`, normalized.

    :param gaussian: :math:`g`, the Gaussian factor of the round's proposal; ``None`` for a round
        drawn from the prior (:math:`g = 1`).
    :param first_component: use the mixture's first component only (the rounds that propose).
    """

    gaussian: MultivariateNormal | None
    first_component: bool = False

    def __call__(self, q: MixtureSameFamily) -> MixtureSameFamily:
        if self.first_component:
            q = first_component(q)
        return q if self.gaussian is None else divide_by_gaussian(q, self.gaussian)


class SNPEA(SequentialMethod):
    r"""SNPE-A (Papamakarios & Murray 2016), for mixture density guides and priors with a
    closed-form mode (see the module docs).

    :param max_draws_per_sample: as for :class:`~.method.SequentialMethod`.
    :param restrict: must be ``None``: the Gaussian division needs the unrestricted proposal.
    """

    name = "snpe-a"

    def __init__(self, *, max_draws_per_sample: int = 1000, restrict: float | None = None):
        super().__init__(max_draws_per_sample=max_draws_per_sample, restrict=restrict)
        if restrict is not None:
            raise unrestricted_only(self.describe())
        self.gaussians: dict[int, MultivariateNormal] = {}  #: :math:`g_t` of each round that proposed
        #: whether proposal rounds fit the first component alone (a mixture density network of several)
        self.one_component = False

    @property
    def needs_mixture_density(self) -> bool:
        return True

    def start(self, guide: NeuralPosterior, prior: Prior, observation: torch.Tensor) -> None:
        super().start(guide, prior, observation)
        prior.mode()  # fails early, naming the site, where the prior is unsupported
        estimator = guide.estimator
        self.one_component = isinstance(estimator, MixtureDensityNetwork) and estimator.components > 1

    def proposal(self, t: int, q: Distribution) -> Proposal:
        self.gaussians[t] = moment_matched_gaussian(q)
        return PriorTimesMixture(self.prior, as_mixture(self.gaussians[t]), self.max_draws_per_sample)

    def training_rows(self, t: int, simulations: Simulations) -> torch.Tensor:
        return simulations.round == t

    def round_loss(self, t: int, simulations: Simulations, config: TrainingConfig, final: bool) -> RoundLoss:
        if final and self.one_component:
            self.guide.estimator.replicate_first_component()
        return super().round_loss(t, simulations, config, final)

    def build_loss(self, t: int, x: torch.Tensor, z: torch.Tensor, rounds: torch.Tensor, final: bool) -> RoundLoss:
        if final or not self.one_component:
            return super().build_loss(t, x, z, rounds, final)
        guide = self.guide
        return RoundLoss("npe", lambda xb, zb: -first_component(guide.estimate(xb)).log_prob(zb).mean(), (x, z))

    def correct(self, t: int, final: bool) -> None:
        gaussian, first = self.gaussians.get(t), self.one_component and not final
        self.guide.correction = GaussianDivision(gaussian, first) if gaussian is not None or first else None
