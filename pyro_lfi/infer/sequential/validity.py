r"""Where the simulator fails: a classifier of :math:`P(\text{valid} \mid z)`.

The atomic APT loss compares each row with parameters of other rows. Dropping invalid rows
makes those parameters come from :math:`\tilde p(z)\,P(\text{valid} \mid z)` rather than the
proposal, and the loss would then learn :math:`p(z \mid x) / P(\text{valid} \mid z)`. Adding
:math:`\log P(\text{valid} \mid z)` to the prior's log density in the loss removes that bias.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, logsigmoid

from ...nn import MLP, Standardize
from ..loop import TrainingConfig, train_loop

__all__ = ["ValidityClassifier", "fit_validity"]


class ValidityClassifier(nn.Module):
    """An MLP on the standardized latents giving the logit of :math:`P(\\text{valid} \\mid z)`."""

    def __init__(self, features: int, hidden_features: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.standardize = Standardize((features,))
        self.net = MLP(features, 1, hidden_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(z)).squeeze(-1)

    def log_prob_valid(self, z: torch.Tensor) -> torch.Tensor:
        return logsigmoid(self(z))

    def fit(self, z: torch.Tensor, valid: torch.Tensor, config: TrainingConfig) -> ValidityClassifier:
        self.standardize.fit(z)
        optimizer = torch.optim.Adam(self.parameters(), lr=config.learning_rate)
        train_loop(
            self,
            lambda zb, vb: binary_cross_entropy_with_logits(self(zb), vb),
            (z, valid.to(z.dtype)),
            optimizer,
            dataclasses.replace(config, progress=False, callbacks=())  # the user's callbacks follow the guide,
        )
        return self


def fit_validity(guide, simulations, config: TrainingConfig) -> ValidityClassifier | None:
    r""":math:`P(\text{valid} \mid z)` trained on every row of ``simulations`` with finite latents;
    ``None`` where every row is usable by ``guide`` (nothing to learn)."""
    usable = guide.usable(simulations)
    if usable.all():
        return None
    z = guide.sites.to_unconstrained(simulations.latents)
    finite = torch.isfinite(z).all(-1)
    return ValidityClassifier(z.shape[-1]).fit(z[finite], usable[finite], config)
