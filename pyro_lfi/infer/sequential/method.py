r"""What a sequential method is: how it proposes, what it trains on, how it corrects the guide.

The round loop (:class:`~pyro_lfi.infer.sequential.rounds.SNPE`) draws round 0 from the prior
and every later round :math:`t` from the method's proposal :math:`\tilde p_t(z)`, then trains
the guide on the loss the method builds for that round, then lets the method correct the guide.
A method is a :class:`SequentialMethod` with four calls, in this order:

* :meth:`~SequentialMethod.start` once, after the first simulations: refuse a guide or prior the
  method cannot use, and keep the guide, the prior :math:`p(z)` and the observation :math:`x_o`;
* :meth:`~SequentialMethod.propose` for each round :math:`t \ge 1`: :math:`\tilde p_t(z)`, made
  from the guide at :math:`x_o` (and restricted to where the simulator works, with ``restrict``);
* :meth:`~SequentialMethod.round_loss` for each round: the training rows, tensors and loss;
* :meth:`~SequentialMethod.correct` after each round's training (SNPE-A sets ``guide.correction``).

A method object keeps what it needs by round (APT's mixture factors, SNPE-A's Gaussians), so it
serves one :class:`~pyro_lfi.infer.sequential.rounds.SNPE` run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...guide.estimators import EstimatorSpec, density_needs_ode
from ...guide.posterior import NeuralPosterior
from ...model.prior import Prior
from ...nn import ConditionalDensityEstimator
from ...simulation.simulations import Simulations
from ..loop import TrainingConfig
from ..losses import npe_loss
from ..npe import training_tensors
from ..validity import ValidityClassifier, fit_classifier, validity_rows
from .mixtures import is_gaussian_mixture
from .proposals import Proposal, RestrictedProposal, TruncatedPrior
from .restriction import Restriction

__all__ = ["RoundLoss", "SequentialMethod", "estimator_of", "unrestricted_only"]


@dataclass
class RoundLoss:
    """One round's training problem: minimize ``loss(*batch)`` over mini-batches of the rows of
    ``tensors`` (tensors sharing their first dim); ``name`` goes into the round's record."""

    name: str
    loss: Callable[..., torch.Tensor]
    tensors: tuple[torch.Tensor, ...]

    @property
    def num_rows(self) -> int:
        return len(self.tensors[0])


def unrestricted_only(method: str) -> ValueError:
    """The error for ``restrict`` given to a method whose exact loss needs its own proposal."""
    return ValueError(
        f"restrict works with the atomic APT loss and TSNPE only: the exact losses of {method} "
        "need the unrestricted proposal"
    )


def estimator_of(guide: NeuralPosterior) -> ConditionalDensityEstimator | EstimatorSpec:
    """The guide's estimator once built, else what it will be built from (a name or callable)."""
    return guide.estimator if guide.is_built else guide.estimator_spec


class SequentialMethod:
    r"""Base class of the sequential methods: the prior in round 0, the NPE loss on every row
    (:func:`~pyro_lfi.infer.losses.npe_loss`: the estimator's own loss, for flows
    :math:`-\frac1n \sum_i \log q_\phi(z_i \mid x_i)`), no correction.

    Subclasses give :meth:`proposal` and override :meth:`build_loss`, :meth:`training_rows`,
    :meth:`correct` or :meth:`start` where they differ.

    :param max_draws_per_sample: rejection-sampling budget per proposed sample.
    :param restrict: if given, once some simulation failed, rounds propose only where a
        classifier of :math:`P(\text{valid} \mid z)` (trained on every row so far) gives at least
        :math:`\gamma`: a probability, or a :class:`~.restriction.Restriction` (e.g. ``Restriction(
        false_negatives=0.05)``, :math:`\gamma` from held-out predictions at the valid rows, for rare
        valid rows).
    """

    #: the name ``SNPE(method=...)`` knows the method by
    name: ClassVar[str] = ""

    def __init__(self, *, max_draws_per_sample: int = 1000, restrict: float | Restriction | None = None):
        #: the rule for the region later rounds propose in (``restrict``, a float as a fixed probability)
        self.restriction = Restriction.of(restrict)
        if max_draws_per_sample < 1:
            raise ValueError(f"max_draws_per_sample must be positive, got {max_draws_per_sample}")
        self.max_draws_per_sample = max_draws_per_sample
        self.restrict = restrict
        #: :math:`P(\text{valid} \mid z)`, once some simulation failed and the method needs it
        self.validity: ValidityClassifier | None = None
        #: :math:`\gamma` of the restriction, set with each classifier (0: no restriction)
        self.validity_threshold = 0.0
        self.guide: NeuralPosterior | None = None
        self.prior: Prior | None = None
        self.observation: torch.Tensor | None = None  #: :math:`x_o`, flat

    def describe(self) -> str:
        """The method and its options, as error messages name it."""
        return f"method='{self.name}'"

    @property
    def needs_mixture_density(self) -> bool:
        """Whether the method needs a guide whose density is a Gaussian mixture (``estimator="mdn"``)."""
        return False

    def check_guide(self, guide: NeuralPosterior) -> None:
        r"""Refuse a guide whose estimator this method cannot train, as far as it is known before
        the guide is built (``SNPE(...)`` calls this; :meth:`start` again on the built guide): here,
        an ODE estimator (``"fmpe"``, ``"npse"``) where a mixture density is needed, or a guide
        truncated to the prior's box (whose density is no Gaussian mixture on :math:`\mathbb{R}^D`).

        :raises ValueError: naming the estimators or options the method takes.
        """
        if not self.needs_mixture_density:
            return
        if density_needs_ode(estimator_of(guide)):
            raise ValueError(
                f"{self.describe()} needs a mixture density guide: NeuralPosterior(model, estimator='mdn')"
            )
        if getattr(guide, "bounded", "transform") == "truncate":
            raise ValueError(
                f"{self.describe()} divides and multiplies Gaussian mixtures over all of R^D, which a guide "
                "built with bounded='truncate' is not: build it with bounded='transform', or use "
                "method='apt' (atomic loss) or method='tsnpe'"
            )

    # -- the four calls -------------------------------------------------------------------------

    def start(self, guide: NeuralPosterior, prior: Prior, observation: torch.Tensor) -> None:
        """Check the built guide and the prior, and keep them with the observation :math:`x_o`.

        :raises ValueError: for a guide this method cannot train, or one another run uses.
        """
        self.check_guide(guide)
        if self.guide is not None and self.guide is not guide:
            raise ValueError(
                f"this {type(self).__name__} object already runs the rounds of another guide; "
                "give each SNPE its own method object"
            )
        if self.needs_mixture_density:
            with torch.no_grad():
                if not is_gaussian_mixture(guide.estimate(observation)):
                    raise ValueError(
                        f"{self.describe()} needs a mixture density guide: NeuralPosterior(model, estimator='mdn')"
                    )
        self.guide, self.prior, self.observation = guide, prior, observation

    def propose(self, t: int) -> Proposal:
        r"""Round :math:`t \ge 1`'s proposal, from the current guide at :math:`x_o`; with
        ``restrict``, cut to where :math:`P(\text{valid} \mid z) \ge \gamma`."""
        with torch.no_grad():
            q = self.guide.conditional(self.observation)
        proposal = self.proposal(t, q)
        gamma = self.validity_threshold
        if self.restriction is None or self.validity is None or gamma <= 0:
            return proposal
        if isinstance(proposal, TruncatedPrior):  # one rejection loop over both regions
            return proposal.restricted(self.validity.log_prob_valid, gamma)
        return RestrictedProposal(proposal, self.validity.log_prob_valid, gamma, self.max_draws_per_sample)

    def round_loss(self, t: int, simulations: Simulations, config: TrainingConfig, final: bool) -> RoundLoss:
        """Round :math:`t`'s training problem over ``simulations`` (every round so far, tagged by
        ``.round``); ``final``: the last round of this :meth:`SNPE.run`. ``config`` trains the
        validity classifier where one is needed."""
        rows = self.training_rows(t, simulations)
        x, z, kept = training_tensors(self.guide, simulations[rows])
        rounds = simulations.round[rows][kept]
        if self.needs_validity(t):
            z_all, valid = validity_rows(self.guide, simulations)
            if not valid.all():  # every row worked so far: nothing to learn, nothing to restrict
                self.validity = fit_classifier(z_all, valid, config)
                if self.restriction is not None:
                    self.validity_threshold = self.restriction.threshold(z_all, valid, config)
        return self.build_loss(t, x, z, rounds, final)

    def correct(self, t: int, final: bool) -> None:
        """After round :math:`t` trained: map the guide's density to the posterior (none here)."""

    # -- what subclasses give -------------------------------------------------------------------

    def proposal(self, t: int, q: torch.distributions.Distribution) -> Proposal:
        r""":math:`\tilde p_t(z)` from the guide at the observation, :math:`q(z \mid x_o)`."""
        raise NotImplementedError

    def training_rows(self, t: int, simulations: Simulations) -> torch.Tensor:
        """The rows round :math:`t` trains on (a boolean mask): every round's."""
        return torch.ones(len(simulations), dtype=torch.bool)

    def build_loss(
        self, t: int, x: torch.Tensor, z: torch.Tensor, rounds: torch.Tensor, final: bool
    ) -> RoundLoss:
        """The loss of round :math:`t` on the usable training rows ``(x, z)``, drawn in ``rounds``."""
        guide = self.guide
        return RoundLoss("npe", lambda xb, zb: npe_loss(guide, xb, zb), (x, z))

    def needs_validity(self, t: int) -> bool:
        r"""Whether round :math:`t` needs :math:`P(\text{valid} \mid z)` (where rows failed)."""
        return self.restriction is not None
