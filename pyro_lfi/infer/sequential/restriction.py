r"""Where later rounds may propose: the region in which the simulator is predicted to work.

A classifier of :math:`P(\text{valid} \mid z)`, trained on every simulation so far, defines the
region :math:`\{z : P(\text{valid} \mid z) \ge \gamma\}` (Lueckmann et al. 2017; Deistler,
Macke & Gonçalves 2022). The threshold :math:`\gamma` is either a fixed probability or chosen
from the data: the ``false_negatives`` quantile of the predictions at the valid simulations, so
that that fraction of the parameters known to work would be rejected (the rule of sbi's
``RestrictionEstimator``, ``allowed_false_negatives``). A fixed probability suits simulators that
fail in a part of the prior; where valid simulations are rare (1 % of the prior in the pyloric
network), the classifier is calibrated to that base rate and predicts
:math:`P(\text{valid} \mid z) \ge 0.5` almost nowhere, and only the quantile rule finds the region.

The quantile is taken over *held-out* predictions (``folds``-fold cross-fitting,
:func:`~pyro_lfi.infer.validity.out_of_fold_probabilities`): a classifier rates the valid rows it
was trained on higher than valid parameters it has not seen, so a quantile of its own training
rows' predictions rejects more than ``false_negatives`` of new valid parameters. On the pyloric
network (15,000 prior simulations, 1.9 % valid, rated on 5,000 others) the in-sample 1 %, 5 %
and 10 % quantiles rejected 5 %, 26 % and 40 % of the held-out valid simulations; the
cross-fitted ones 1.3 %, 5.1 % and 10.3 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import TrainingConfig
from ..validity import out_of_fold_probabilities

__all__ = ["Restriction"]


@dataclass(frozen=True)
class Restriction:
    r"""The rule for :math:`\gamma`: ``probability`` (fixed) or ``false_negatives`` (a quantile).

    >>> lfi.SNPE(model, guide, method="tsnpe", restrict=0.5)                              # doctest: +SKIP
    >>> lfi.SNPE(model, guide, method="tsnpe", restrict=Restriction(false_negatives=0.05))  # doctest: +SKIP

    With both given, :math:`\gamma` is the smaller of the two: the region admits every :math:`z`
    with :math:`P(\text{valid} \mid z) \ge` ``probability`` and rejects about
    ``false_negatives`` of the valid parameters it has not seen (or fewer).
    """

    probability: float | None = None
    false_negatives: float | None = None
    #: folds of the cross-fitting that gives held-out predictions (with ``false_negatives``)
    folds: int = 5

    def __post_init__(self):
        if self.probability is None and self.false_negatives is None:
            raise ValueError("a Restriction needs a probability, a false_negatives fraction or both")
        if self.probability is not None and not 0 < self.probability < 1:
            raise ValueError(f"restrict is a probability in (0, 1), got {self.probability}")
        if self.false_negatives is not None and not 0 <= self.false_negatives < 1:
            raise ValueError(f"false_negatives is a fraction in [0, 1), got {self.false_negatives}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds is a number of folds (2 or more), got {self.folds!r}")

    @classmethod
    def of(cls, restrict: float | Restriction | None) -> Restriction | None:
        """``SNPE(restrict=...)`` as a rule: a float is a fixed probability."""
        if restrict is None or isinstance(restrict, Restriction):
            return restrict
        if isinstance(restrict, bool) or not isinstance(restrict, int | float):
            raise TypeError(f"restrict is a probability or a pyro_lfi.Restriction, got {restrict!r}")
        return cls(probability=float(restrict))

    def threshold(self, z: torch.Tensor, valid: torch.Tensor, config: TrainingConfig) -> float:
        r""":math:`\gamma` for the classifier of ``valid`` ``[n]`` (bool) given the latents ``z``
        ``[n, D]`` of every simulation so far, fitted with ``config`` (0: no restriction)."""
        gamma = math.inf if self.probability is None else self.probability
        if self.false_negatives is not None and valid.any():
            held_out = out_of_fold_probabilities(z, valid, config, self.folds)[valid]
            gamma = min(gamma, float(torch.quantile(held_out, self.false_negatives)))
        if not math.isfinite(gamma):  # a quantile with no valid simulation yet: no restriction
            return 0.0
        return gamma
