r"""APT / SNPE-C (Greenberg et al. 2019): losses that are correct for any proposal.

Both losses are averages over rows :math:`(z_i, x_i)` with :math:`z_i` from a proposal
:math:`\tilde p(z)`, minimized by :math:`q_\phi(z \mid x) = p(z \mid x)`; ``z`` is the
unconstrained latent vector (see :mod:`pyro_lfi.infer.losses`). The method (:class:`APT`)
proposes from the guide at the observation and trains on every round with one of them.
"""

from __future__ import annotations

import torch
from pyro.distributions import MixtureSameFamily
from torch.distributions import Distribution

from ...guide.estimators import density_needs_ode
from ...guide.posterior import NeuralPosterior
from ...model.prior import Prior
from ..losses import npe_loss, other_rows
from .method import RoundLoss, SequentialMethod, estimator_of, unrestricted_only
from .mixtures import is_gaussian_mixture, log_mixture_overlap
from .proposals import GuideProposal, PriorTimesMixture, Proposal
from .restriction import Restriction

__all__ = ["APT", "atomic_apt_loss", "mixture_apt_loss"]

LOSSES = ("auto", "atomic", "mixture")


def atomic_apt_loss(
    guide, x: torch.Tensor, z: torch.Tensor, log_prior: torch.Tensor, num_atoms: int = 10
) -> torch.Tensor:
    r"""Atomic APT / SNPE-C loss (Greenberg et al. 2019), valid for any mix of proposals.

    Each row's own :math:`z_i` competes with ``num_atoms - 1`` parameters :math:`z_j` of other
    rows of the batch:

    .. math:: \ell_i = -\log \frac{q_\phi(z_i \mid x_i)/p(z_i)}
        {\sum_{j \in A_i} q_\phi(z_j \mid x_i)/p(z_j)},

    minimized where :math:`q_\phi(z \mid x) \propto p(x \mid z)\,p(z)`. ``log_prior`` is
    :math:`\log p(z_i)` per row (with any validity correction already added).
    """
    n = len(z)
    atoms = min(num_atoms, n)
    if atoms < 2:
        raise ValueError(f"the atomic loss needs at least 2 atoms, got num_atoms={num_atoms} and {n} rows")
    others = other_rows(n, atoms - 1, z.device)  # [n, atoms-1], never i
    index = torch.cat([torch.arange(n, device=z.device)[:, None], others], dim=1).T  # [atoms, n]; row 0: own
    q = guide.estimate(x)  # batch shape [n]: the context is embedded and conditioned on once per row
    logits = q.log_prob(z[index]) - log_prior[index]  # z[index]: [atoms, n, D], broadcast over atoms
    return -(logits[0] - logits.logsumexp(0)).mean()


def mixture_apt_loss(guide, x: torch.Tensor, z: torch.Tensor, factor: MixtureSameFamily | None) -> torch.Tensor:
    r"""Exact (non-atomic) APT loss for a Gaussian-mixture guide when the proposal is the prior
    times a Gaussian mixture, :math:`\tilde p(z) \propto p(z)\, r(z)`:

    .. math:: \tilde q_\phi(z \mid x) = \frac{q_\phi(z \mid x)\, r(z)}{\int q_\phi(z' \mid x)\,
        r(z')\, dz'}, \qquad \int \mathcal{N}(z; m_k, S_k)\, \mathcal{N}(z; \mu_l, \Sigma_l)\,dz
        = \mathcal{N}(m_k; \mu_l, S_k + \Sigma_l),

    and :math:`-\log \tilde q_\phi(z_i \mid x_i)` is minimized where :math:`q_\phi` is the
    posterior (Greenberg et al. 2019). ``factor`` is :math:`r` (``None`` for the prior itself,
    where this is :func:`npe_loss`).
    """
    if factor is None:
        return npe_loss(guide, x, z)
    q = guide.estimate(x)
    return -(q.log_prob(z) + factor.log_prob(z) - log_mixture_overlap(q, factor)).mean()


class APT(SequentialMethod):
    r"""APT / SNPE-C (Greenberg et al. 2019): round :math:`t \ge 1` proposes from the guide at the
    observation and every round trains on all rows so far.

    * atomic loss (:func:`atomic_apt_loss`): :math:`\tilde p_t(z) = q(z \mid x_o)`. Invalid rows
      are dropped, which biases the atoms by :math:`P(\text{valid} \mid z)`; once a row failed,
      :math:`\log P(\text{valid} \mid z)` from a classifier is added to :math:`\log p(z)`.
    * mixture loss (:func:`mixture_apt_loss`, mixture density guides):
      :math:`\tilde p_t(z) \propto p(z)\, r_t(z)` with :math:`r_t = q(z \mid x_o)`, and each
      row's loss uses its own round's :math:`r_t`; exact, also where rows failed.

    :param loss: ``"atomic"``, ``"mixture"`` or ``"auto"`` (mixture for a mixture density guide
        that is not truncated to the prior's box).
    :param num_atoms: atoms per row of the atomic loss.
    :param max_draws_per_sample: as for :class:`~.method.SequentialMethod`.
    :param restrict: as for :class:`~.method.SequentialMethod` (atomic loss only).
    """

    name = "apt"

    def __init__(
        self, loss: str = "auto", num_atoms: int = 10, *, max_draws_per_sample: int = 1000,
        restrict: float | Restriction | None = None,
    ):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose 'auto', 'atomic' or 'mixture'")
        if num_atoms < 2:
            raise ValueError(f"num_atoms must be at least 2, got {num_atoms}")
        super().__init__(max_draws_per_sample=max_draws_per_sample, restrict=restrict)
        if restrict is not None and loss == "mixture":
            raise unrestricted_only(self.describe())
        self.loss = loss
        self.num_atoms = num_atoms
        self.mixture = False  #: whether the mixture loss is used (known at :meth:`start`)
        self.factors: dict[int, MixtureSameFamily] = {}  #: :math:`r_t` of each round the mixture loss proposed

    def describe(self) -> str:
        return "method='apt'" + ("" if self.loss == "auto" else f" with loss='{self.loss}'")

    @property
    def needs_mixture_density(self) -> bool:
        return self.loss == "mixture"

    def check_guide(self, guide: NeuralPosterior) -> None:
        super().check_guide(guide)
        estimator = estimator_of(guide)
        if density_needs_ode(estimator):
            name = estimator if isinstance(estimator, str) else type(estimator).__name__
            raise ValueError(
                f"{self.describe()} needs the guide's density of num_atoms={self.num_atoms} parameters per training "
                f"row, and estimator={name!r} solves an ODE for each density: use SNPE(method='tsnpe') with it, "
                "or method='apt' with estimator='nsf', 'maf' or 'mdn'"
            )

    def start(self, guide: NeuralPosterior, prior: Prior, observation: torch.Tensor) -> None:
        super().start(guide, prior, observation)
        with torch.no_grad():
            self.mixture = (
                self.loss != "atomic" and not guide.sites.truncated and is_gaussian_mixture(guide.estimate(observation))
            )
        if self.mixture and self.restrict is not None:
            raise ValueError(
                "restrict needs the atomic APT loss, but this mixture density guide gets the exact "
                "mixture loss: pass loss='atomic' as well"
            )
        if self.mixture:
            prior.mode()  # fails early, naming the site, where the prior is unsupported

    def proposal(self, t: int, q: Distribution) -> Proposal:
        if not self.mixture:
            return GuideProposal(q)
        self.factors[t] = q
        return PriorTimesMixture(self.prior, q, self.max_draws_per_sample)

    def needs_validity(self, t: int) -> bool:
        return super().needs_validity(t) or (t > 0 and not self.mixture)

    def build_loss(self, t: int, x: torch.Tensor, z: torch.Tensor, rounds: torch.Tensor, final: bool) -> RoundLoss:
        if t == 0:
            return super().build_loss(t, x, z, rounds, final)
        guide, factors = self.guide, self.factors
        if self.mixture:

            def loss(xb, zb, rb):
                total = 0.0
                for r in rb.unique().tolist():
                    mask = rb == r
                    total = total + mixture_apt_loss(guide, xb[mask], zb[mask], factors.get(r)) * mask.sum()
                return total / len(rb)

            return RoundLoss("apt (mixture)", loss, (x, z, rounds))
        num_atoms = self.num_atoms
        return RoundLoss(
            "apt (atomic)", lambda xb, zb, lb: atomic_apt_loss(guide, xb, zb, lb, num_atoms), (x, z, self.log_prior(z))
        )

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)`, plus :math:`\log P(\text{valid} \mid z)` where rows failed."""
        with torch.no_grad():
            log_prior = self.prior.log_prob(z)
            return log_prior if self.validity is None else log_prior + self.validity.log_prob_valid(z)
