r"""Where later rounds may propose: the region in which the simulator is predicted to work.

A classifier of :math:`P(\text{valid} \mid z)`, trained on every simulation so far, defines the
region :math:`\{z : P(\text{valid} \mid z) \ge \gamma\}` (Lueckmann et al. 2017; Deistler,
Macke & Gonçalves 2022). The threshold :math:`\gamma` is either a fixed probability or chosen
from the data: the ``false_negatives`` quantile of the classifier's predictions at the valid
simulations, so that that fraction of the parameters known to work would have been rejected
(sbi's ``RestrictionEstimator``, ``allowed_false_negatives``). A fixed probability suits
simulators that fail in a part of the prior; where valid simulations are rare (1 % of the prior
in the pyloric network), the classifier is calibrated to that base rate and predicts
:math:`P(\text{valid} \mid z) \ge 0.5` almost nowhere, and only the quantile rule finds the region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...nn.validity import ValidityClassifier

__all__ = ["Restriction"]


@dataclass(frozen=True)
class Restriction:
    r"""The rule for :math:`\gamma`: ``probability`` (fixed) or ``false_negatives`` (a quantile).

    >>> lfi.SNPE(model, guide, method="tsnpe", restrict=0.5)                              # doctest: +SKIP
    >>> lfi.SNPE(model, guide, method="tsnpe", restrict=Restriction(false_negatives=0.01))  # doctest: +SKIP

    With both given, :math:`\gamma` is the smaller of the two: the region admits every :math:`z`
    with :math:`P(\text{valid} \mid z) \ge` ``probability`` and rejects at most
    ``false_negatives`` of the valid simulations.
    """

    probability: float | None = None
    false_negatives: float | None = None

    def __post_init__(self):
        if self.probability is None and self.false_negatives is None:
            raise ValueError("a Restriction needs a probability, a false_negatives fraction or both")
        if self.probability is not None and not 0 < self.probability < 1:
            raise ValueError(f"restrict is a probability in (0, 1), got {self.probability}")
        if self.false_negatives is not None and not 0 <= self.false_negatives < 1:
            raise ValueError(f"false_negatives is a fraction in [0, 1), got {self.false_negatives}")

    @classmethod
    def of(cls, restrict: float | Restriction | None) -> Restriction | None:
        """``SNPE(restrict=...)`` as a rule: a float is a fixed probability."""
        if restrict is None or isinstance(restrict, Restriction):
            return restrict
        if isinstance(restrict, bool) or not isinstance(restrict, int | float):
            raise TypeError(f"restrict is a probability or a pyro_lfi.Restriction, got {restrict!r}")
        return cls(probability=float(restrict))

    @torch.no_grad()
    def threshold(self, classifier: ValidityClassifier, z_valid: torch.Tensor) -> float:
        r""":math:`\gamma` for ``classifier``, given the valid simulations' latents ``z_valid`` ``[n, D]``."""
        gamma = math.inf if self.probability is None else self.probability
        if self.false_negatives is not None and len(z_valid):
            p = classifier.log_prob_valid(z_valid).exp()
            gamma = min(gamma, float(torch.quantile(p, self.false_negatives)))
        if not math.isfinite(gamma):  # a quantile with no valid simulation yet: no restriction
            return 0.0
        return gamma
