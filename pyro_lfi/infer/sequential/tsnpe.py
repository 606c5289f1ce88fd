r"""TSNPE (Deistler et al. 2022): proposals from the prior truncated to the posterior estimate's
highest-density region at the observation.

Inside the region the proposal is proportional to the prior, :math:`\tilde p_t(z) \propto p(z)\,
\mathbb{1}[z \in R_t]`, and the region holds all but :math:`\epsilon` of the posterior's mass,
so the plain NPE loss over every round's rows still fits :math:`p(z \mid x)` where it matters.
"""

from __future__ import annotations

from torch.distributions import Distribution

from .method import SequentialMethod
from .proposals import Proposal, TruncatedPrior
from .restriction import Restriction

__all__ = ["TSNPE"]


class TSNPE(SequentialMethod):
    r"""Truncated sequential NPE (Deistler et al. 2022).

    :param quantile: the guide mass :math:`\epsilon` left outside the truncation region.
    :param max_draws_per_sample: as for :class:`~.method.SequentialMethod`.
    :param restrict: as for :class:`~.method.SequentialMethod`.
    """

    name = "tsnpe"

    def __init__(
        self, quantile: float = 1e-4, *, max_draws_per_sample: int = 1000, restrict: float | Restriction | None = None
    ):
        if not 0 <= quantile < 1:
            raise ValueError(f"quantile must lie in [0, 1), got {quantile}")
        super().__init__(max_draws_per_sample=max_draws_per_sample, restrict=restrict)
        self.quantile = quantile

    def proposal(self, t: int, q: Distribution) -> Proposal:
        return TruncatedPrior(self.prior, q, self.quantile, max_draws_per_sample=self.max_draws_per_sample)
